"""The book's networks, evaluated on the MNIST test set to judge how weights survive storage.

Modules are imported on use, not here: ``net.mlp`` (the chapter-3 network), ``net.convnet``
(the chapter-7/8 convolutional networks, built from ``net.layers``), ``net.models`` (which
network a set of weights belongs to), ``net.mnist`` (the IDX reader), ``net.data`` (finding
and verifying the reference files), ``net.parallel`` (worker threads and BLAS threads for
evaluation) and ``net.errors`` (net's own errors).

``net`` imports numpy and the standard library only, never ``weightstore`` (``net.parallel``
also uses ``threadpoolctl`` when it is installed, and works without it):
``weightstore.lab`` builds on it and turns its errors into weightstore errors.
"""
