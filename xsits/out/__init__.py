"""Layer ``out``: atomic writes of cubes, timelapses and the catalog of outputs.

Owns: ``export`` (cubes to NetCDF / Zarr / CSV / Parquet), ``gif`` (timelapses), ``atomic``
(every write appears whole or not at all), ``catalog`` (the Intake catalog of outputs).
Must not: import ``batch`` or anything above it.
"""
