"""Hostile files, built at test time (see build.py)."""
