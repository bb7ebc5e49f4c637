"""One exception hierarchy for everything xsits raises on purpose.

Every message is one line that names the offending file, row or feature and
says how to fix it.  Catch :class:`XsitsError` to catch them all.

Examples
--------
>>> from xsits.errors import AOIError, XsitsError
>>> issubclass(AOIError, XsitsError)
True
"""

from __future__ import annotations


class XsitsError(Exception):
    """Base class of every error raised by xsits."""


class AOIError(XsitsError, ValueError):
    """The AOI file or GeoDataFrame cannot be used (missing, malformed, bad ids...)."""


class FeatureIdError(AOIError):
    """A feature id is missing, duplicated or not safe as a file name."""


class QueryError(XsitsError, ValueError):
    """The STAC query is malformed: unknown preset, bad dates, bad query/filter."""


class SearchError(XsitsError, RuntimeError):
    """The STAC search failed (server unreachable after retries, bad answer)."""


class _HttpStatus:
    """Mixin of the errors that carry the HTTP status of a refused request (``.status``)."""

    status: int

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class StacRequestError(_HttpStatus, SearchError):
    """The STAC API refused the request itself (HTTP 400, 401, 403, 404, 422...): not retried.

    The message carries the server's own explanation (without query strings or tokens).

    Attributes
    ----------
    status
        The HTTP status code.
    """


class NoItemsError(SearchError):
    """No STAC item matched a feature (outside every tile, or all too cloudy)."""


class LoadError(XsitsError, RuntimeError):
    """Pixels could not be read (COG unreachable after retries, truncated data)."""


class UnreadableGroupError(LoadError):
    """No item of a search group could be read; ``by_item`` holds each item's reason."""

    def __init__(self, message: str, by_item: dict[str, str]) -> None:
        super().__init__(message)
        self.by_item = by_item


class BandError(XsitsError, KeyError):
    """A band or variable needed by an operation is missing from the cube."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it one plain line
        return str(self.args[0]) if self.args else ""


class GridError(XsitsError, ValueError):
    """A grid/CRS/resolution/size parameter is invalid."""


class GapfillError(XsitsError, ValueError):
    """Gap filling cannot run as asked (unknown method, bad ``max_gap``)."""


class IndexNameError(XsitsError, ValueError):
    """An unknown spectral index was asked for."""


class ExportError(XsitsError, OSError):
    """An output cannot be written (exists, unsafe path, unknown format)."""


class OutputDirError(ExportError, NotADirectoryError):
    """An output directory (or one of its parents) is an existing file, not a directory."""


class OutputExistsError(ExportError, FileExistsError):
    """The output file exists and ``overwrite=False``."""


class UnsafePathError(ExportError):
    """A feature id or path would escape the output directory."""


class CatalogError(XsitsError, ValueError):
    """An Intake catalog entry or parameter is invalid."""


class MissingDependencyError(XsitsError, ImportError):
    """An optional extra is needed (e.g. ``pip install xsits[indices]``)."""


class OptionError(XsitsError, ValueError):
    """An unknown option, or a value it cannot take (:func:`xsits.set_options`)."""


class BatchError(XsitsError, ValueError):
    """An argument of :func:`xsits.compute_all` is invalid (steps, scheduler, batch size, input)."""


class HarmonizeWarning(UserWarning):
    """An item's metadata and pixels disagree on the +1000 offset, or a date mixed decisions.

    Raised (as a warning) when an item said to still carry the offset shows reflectance DN
    that have it removed already (:mod:`xsits.cube.offset`); the item is then not shifted.
    """


class TransientError(XsitsError, OSError):
    """A failure worth retrying (busy server, timeout, dropped connection, short body).

    Attributes
    ----------
    retry_after
        Seconds the server asked to wait (its ``Retry-After``), if known.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ClientFaultError(_HttpStatus, XsitsError, OSError):
    """The server refused the request itself (HTTP 4xx other than 408 / 425 / 429).

    Attributes
    ----------
    status
        The HTTP status code.
    """


class SampleError(XsitsError, ValueError):
    """An argument of :func:`sample` is invalid (window, reduce, steps, output path...)."""
