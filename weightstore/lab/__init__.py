"""The book's experiments, built on weightstore's storage and the book's networks (``net``).

- :mod:`weightstore.lab.evaluate`: the accuracy a set of weights keeps on the MNIST test set;
- :mod:`weightstore.lab.shrink`: the smallest file that keeps the network's predictions;
- :mod:`weightstore.lab.report`: what storing the weights costs in every format, measured;
- :mod:`weightstore.lab.interop`: the weights handed to other tools (ONNX, a CSV test image);
- :mod:`weightstore.lab.data`: the reference files, found and verified.

The arrows point down: the lab imports storage (``weightstore.api``, the codecs, ...) and
``net``; storage never imports the lab, and ``net`` never imports weightstore. ``net`` has
its own errors; the lab turns them into the :mod:`weightstore.errors` class of the same name
(:mod:`weightstore.lab._neterrors`), so every failure a user can cause is still a
:class:`~weightstore.errors.WeightstoreError`.
"""
