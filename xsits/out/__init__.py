"""Layer ``out``: atomic writes of cubes (``export``) and timelapses (``gif``).

Must not: import ``batch`` or anything above it.
"""
