"""Reading micrographs and their metadata; HDF5 archives."""
