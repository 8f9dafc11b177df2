"""Write synthetic samples into a microcnn HDF5 archive (``microcnn.io.hdf5.ArchiveWriter``).

Same contents as the folder layouts: 8-bit images (round(255 x)), masks with 255 = not labelled,
class labels (index into the six ``CLASS_NAMES``) or regression targets; provenance goes to the
archive's ``extra`` attribute. For regression with a "tortuosity" target, non-percolating samples
(tortuosity = inf) are skipped, as in the folder writer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from microcnn.registry import check_choice
from microcnn.synth.dataset import TASKS, SynthSample
from microcnn.synth.generators import CLASS_NAMES
from microcnn.synth.properties import UNITS
from microcnn.synth.writer import SEGMENTATION_CLASSES, sample_name, skip_for_targets, to_uint8


def write_hdf5(
    samples: Iterable[SynthSample],
    path: str | Path,
    *,
    task: str,
    targets: Sequence[str] | None = None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``samples`` to a new archive at ``path`` (refused if it exists); return the write summary.

    Example:
        >>> from microcnn.synth import make_dataset
        >>> write_hdf5(make_dataset("segmentation", n=4, size=64), "seg.h5", task="segmentation")
        ...                                                                    # doctest: +SKIP
    """
    from microcnn.io.hdf5 import ArchiveWriter

    check_choice("task", task, TASKS)
    targets = tuple(targets or ())
    names = {"classification": CLASS_NAMES, "segmentation": SEGMENTATION_CLASSES}.get(task)
    skipped: list[str] = []
    with ArchiveWriter(
        path,
        task=task,
        class_names=list(names) if names else None,
        target_names=list(targets) if task == "regression" else None,
        target_units=[UNITS[t] for t in targets] if task == "regression" else None,
        extra={**(provenance or {}), "source": "microcnn.synth"},
    ) as writer:
        for index, sample in enumerate(samples):
            name = sample_name(index)
            if skip_for_targets(sample, task, targets):
                skipped.append(name)
                continue
            labels: dict[str, Any] = {
                "segmentation": {"mask": sample.mask},
                "classification": {"label": sample.label},
                "regression": {"target": [sample.properties[t] for t in targets]},
            }[task]
            writer.append(to_uint8(sample.image), pixel_size_um=sample.pixel_size_um, name=name, **labels)
        written = len(writer)
    return {"written": written, "skipped": skipped, "root": str(path)}
