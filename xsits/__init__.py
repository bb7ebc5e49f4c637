"""xsits: satellite image time series for many places at once, as lazy xarray cubes.

Examples
--------
>>> import xsits
>>> hasattr(xsits, "open_cubes")
True
"""

from xsits import accessor as _accessor  # noqa: F401  (registers the .sits accessor)
from xsits import demo as _demo  # noqa: F401  (registers the stac="demo" catalog)
from xsits import errors
from xsits._version import __version__
from xsits.batch import compute_all
from xsits.batch.combined import open_combined
from xsits.cube.aoi import read_aoi
from xsits.cube.grid import GridSpec
from xsits.cube.load import Cubes, dry_run, open_cubes
from xsits.cube.spec import CubeSpec, LoadSpec
from xsits.ops import steps
from xsits.ops.combine import combine
from xsits.ops.stack import stack
from xsits.options import get_options, set_options
from xsits.sample import sample
from xsits.stac.query import StacQuery
from xsits.stac.search import SearchResult, search

__all__ = [
    "Cubes",
    "__version__",
    "CubeSpec",
    "GridSpec",
    "LoadSpec",
    "SearchResult",
    "StacQuery",
    "combine",
    "compute_all",
    "dry_run",
    "errors",
    "get_options",
    "open_combined",
    "open_cubes",
    "read_aoi",
    "sample",
    "search",
    "set_options",
    "stack",
    "steps",
]
