"""The built-in codecs, one module each. Importing this package registers them."""

from . import compact, csv, hdf5, json, npz, pickle, zstd  # noqa: F401  (registration on import)
