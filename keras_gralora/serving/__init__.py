"""Serving: per-row adapter routing, in-place hot-swaps, and the lock between swaps and forward passes.

Above files, beside interop; see the architecture guide.
"""
