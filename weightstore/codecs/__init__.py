"""The built-in codecs, one module each. Importing this package registers them.

Registration order is sniffing order. ``safetensors`` comes first: its test (a
header length whose high bytes are zero, then ``{``) matches no other format,
while a safetensors file whose length byte happens to be ``0x80`` or ``{``
would satisfy the looser pickle or JSON tests. Its module imports the optional
``safetensors`` package only when a file is read or written.
"""

from . import safetensors  # noqa: F401,I001  (first: see above)
from . import gguf_codec  # noqa: F401  (sniffs 'GGUF', claimed by no other codec)
from . import keras_codec  # noqa: F401  (before npz: a .keras zip is not an npz)
from . import onnx_codec  # noqa: F401  (sniffs a ModelProto's first two fields)
from . import compact, csv, hdf5, json, npz, pickle, zstd  # noqa: F401  (registration on import)
