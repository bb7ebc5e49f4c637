"""Layer ``cube``: from AOI features and STAC items to one lazy cube per feature.

Owns: AOI files (``aoi``), output grids (``grid``), the per-item offset decision (``offset``),
load plans (``plan``), ``open_cubes`` (``load``), point reads (``points``) and the polygon
clip applied while loading (``clip``).
Must not: import ``ops``, ``out``, ``batch`` or anything above them.
"""
