"""Layer ``ops``: operations on one cube, lazy on dask, equal on numpy.

Owns: harmonize, masks, gap-filling, smoothing, patches, composites, indices, labels,
stacking and the ``steps`` that batches run.
Must not: import ``out``, ``batch`` or anything above them.
"""
