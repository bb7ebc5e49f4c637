"""Layer ``io``: bytes and pixels from files, with the one retry policy.

Owns: HTTP / object-store range fetches (``fetch``), GeoTIFF headers (``tiff``), the
odc-loader reader driver (``reader``) and its fast reader (``fast``), href signing
(``signing``), tolerated failed reads (``tolerate``) and retries (``retry``).
Must not: import any other xsits layer than ``options``, ``errors`` and ``_common``.
"""
