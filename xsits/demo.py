"""The embedded offline demo (stub: being written)."""

from __future__ import annotations


def run_demo(out_dir=None, *, progress=True):
    """Run the seed workload on the built-in demo world; print and return a summary (stub)."""
    raise NotImplementedError
