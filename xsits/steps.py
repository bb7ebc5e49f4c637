"""Picklable processing steps for the batch engine (stub: being written)."""
