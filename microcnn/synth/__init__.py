"""Synthetic SEM-like micrographs of six morphology classes, with exact masks and physics labels.

Example:
    >>> import numpy as np
    >>> from microcnn.synth import CLASS_NAMES, generate
    >>> s = generate("spheroidal_particles", size=64, rng=np.random.default_rng(0))
    >>> s.label == CLASS_NAMES.index("spheroidal_particles")
    True
"""

from microcnn.synth.dataset import TASKS, SynthSample, generate, make_dataset, sample_rng
from microcnn.synth.generators import CLASS_NAMES, GENERATORS
from microcnn.synth.properties import PROPERTY_NAMES, UNITS, TransportNotConverged, measure, transport

__all__ = [
    "CLASS_NAMES",
    "GENERATORS",
    "PROPERTY_NAMES",
    "TASKS",
    "UNITS",
    "SynthSample",
    "TransportNotConverged",
    "generate",
    "make_dataset",
    "measure",
    "sample_rng",
    "transport",
]
