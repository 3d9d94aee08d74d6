"""The book's experiments on top of the storage library: evaluation, shrinking, the report."""
