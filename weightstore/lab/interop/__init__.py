"""Helpers for using weightstore files from other tools.

- :mod:`weightstore.lab.interop.onnx`: :func:`~weightstore.lab.interop.onnx.export_mlp`
  writes the book's 3-layer network as an ONNX model (needs the ``onnx`` extra).
- :mod:`weightstore.lab.interop.mnist`: :func:`~weightstore.lab.interop.mnist.write_image_csv`
  writes one MNIST test image as a CSV of pixel values, for the SQL example.

``docs/interop.md`` shows how numpy, h5py, safetensors, ONNX Runtime, Node.js,
sqlite3, pandas and spreadsheets load the weights. Nothing here is imported by
``import weightstore``; the optional packages (onnx) are imported only when used.
"""
