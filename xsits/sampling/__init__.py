"""Layer ``sampling``: what :func:`xsits.sample` reads of points and how it makes their rows.

Owns: reading points' windows part by part, tile by tile, on a thread, processes or a
cluster (``read``), and turning them, through the steps, into per-point rows and one table
(``rows``).
Must not: import ``sample`` or anything above it; check :func:`xsits.sample`'s arguments.
"""
