"""Layer ``stac``: STAC searches and what each provider's items mean.

Owns: the STAC search per group of features (``search``), the retrying STAC API client
(``api``), what to search (``query``: ``StacQuery``), the Query extension and CQL2
(``filters``), local catalog files (``local``), provider presets, dialects and the registry of
catalogs made on first use (``providers``).
Must not: import ``cube`` or anything above it.
"""
