"""Datasets (folders and HDF5 archives), patch sampling, splits and augmentation pipelines.

Import from the submodules (``microcnn.data.datasets``, ``.transforms``, ``.splits``, ``.patches``); this
package does not import torch or albumentations by itself.
"""
