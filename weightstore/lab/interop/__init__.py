"""Helpers for using weightstore files from other tools.

- :mod:`weightstore.interop.onnx`: :func:`~weightstore.interop.onnx.export_mlp`
  writes the book's 3-layer network as an ONNX model (needs the ``onnx`` extra).
- :mod:`weightstore.interop.mnist`: :func:`~weightstore.interop.mnist.write_image_csv`
  writes one MNIST test image as a CSV of pixel values, for the SQL example.

``docs/interop.md`` shows how numpy, h5py, safetensors, ONNX Runtime, Node.js,
sqlite3, pandas and spreadsheets load the weights. Nothing here is imported by
``import weightstore``; the optional packages are imported only when used.
"""
