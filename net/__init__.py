"""The book's networks, evaluated on the MNIST test set to judge how weights survive storage.

Modules are imported on use, not here: ``net.mlp`` (the chapter-3 network), ``net.mnist``
(the IDX reader) and ``net.data`` (finding and verifying the reference files).
"""
