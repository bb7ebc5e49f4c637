"""The package version, read by the package root and by the modules that record it."""

__version__ = "0.1.0"
