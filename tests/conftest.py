"""Session fixtures: a synthetic Sentinel-2 world served by a real local STAC API and COG server.

- ``world``: the generated test world (COGs on disk + collection + items).
- ``cog_server``: a running :class:`xsits.testing.servers.CogServer` over ``world.root``.
- ``pg_stac``: a running :class:`xsits.testing.pgstac.PgstacServer` with the world's
  collection and items loaded (asset hrefs point at ``cog_server.url``).
- ``stac_url``: ``pg_stac.url``.
- ``requires_servers``: both servers; the reason to skip (or, with ``CI=true``, fail).

Tests using these fixtures get the ``servers`` marker automatically
(``pytest -m "not servers"`` runs the rest).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SERVER_FIXTURES = {"pg_stac", "cog_server", "stac_url", "requires_servers", "world_items"}

# The session world: 6 places, 2021-12-01..2022-03-31 every 10 days (the processing
# baseline 04.00 switch of 2022-01-25 is inside).
WORLD_POINTS = (
    (5.90, 45.20),  # UTM 31, Chambery-ish
    (5.905, 45.203),  # 500 m from the previous one: same window
    (6.10, 45.20),  # UTM 32, just across the zone border from the pair
    (25.00, 60.20),  # UTM 35, Helsinki-ish
    (-3.70, 40.42),  # UTM 30, Madrid-ish
    (5.9165, 45.2115),  # ~1.3 km NE of the pair: near the edge of its 2.56 km window
)
WORLD_START, WORLD_END, WORLD_REVISIT_DAYS = "2021-12-01", "2022-03-31", 10
WORLD_BANDS = ("B02", "B03", "B04", "B08", "B11", "SCL")


def _need_servers(reason: str) -> None:
    """Fail under CI (``CI=true``), skip otherwise."""
    msg = f"local STAC/COG servers unavailable: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


# --------------------------------------------------------------------------- world


def _make_session_world(root: Path) -> Any:
    from xsits.testing.scenes import WorldSpec
    from xsits.testing.world import make_world

    spec = WorldSpec(
        points=WORLD_POINTS,
        start=WORLD_START,
        end=WORLD_END,
        revisit_days=WORLD_REVISIT_DAYS,
        bands=WORLD_BANDS,
        window_m=2560,
        blocksize=256,
        seed=0,
    )
    return make_world(root, spec)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The generated test world (``xsits.testing.world.make_world``) in a session temp dir."""
    return _make_session_world(tmp_path_factory.mktemp("world"))


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="session")
def _cog_server_or_reason(world: Any) -> Iterator[Any]:
    from xsits.testing.launch import ServerError
    from xsits.testing.servers import CogServer

    try:
        server = CogServer(world.root).start()
    except ServerError as exc:
        yield str(exc)
        return
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _pg_stac_or_reason(world: Any, _cog_server_or_reason: Any) -> Iterator[Any]:
    from xsits.testing.launch import ServerError
    from xsits.testing.pgstac import PgstacServer, postgres_available

    if isinstance(_cog_server_or_reason, str):
        yield _cog_server_or_reason
        return
    ok, reason = postgres_available()
    if not ok:
        yield reason
        return
    try:
        server = PgstacServer().start()
    except ServerError as exc:
        yield str(exc)
        return
    try:
        server.load(world.collection, world.item_dicts(_cog_server_or_reason.url))
        server.reset_stats()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cog_server(_cog_server_or_reason: Any) -> Any:
    """Running CogServer over ``world.root`` (``.url`` ends with ``/``)."""
    if isinstance(_cog_server_or_reason, str):
        _need_servers(_cog_server_or_reason)
    return _cog_server_or_reason


@pytest.fixture(scope="session")
def pg_stac(_pg_stac_or_reason: Any) -> Any:
    """Running PgstacServer with the world's collection and items loaded."""
    if isinstance(_pg_stac_or_reason, str):
        _need_servers(_pg_stac_or_reason)
    return _pg_stac_or_reason


@pytest.fixture(scope="session")
def stac_url(pg_stac: Any) -> str:
    """Root URL of the local STAC API, no trailing slash."""
    return pg_stac.url


@pytest.fixture(scope="session")
def world_items(world: Any, cog_server: Any) -> list[dict]:
    """The item dicts loaded into the API (asset hrefs on ``cog_server.url``)."""
    return world.item_dicts(cog_server.url)


@pytest.fixture(scope="session")
def requires_servers(pg_stac: Any, cog_server: Any) -> tuple[Any, Any]:
    """Both servers, ``(pg_stac, cog_server)``; skips (fails under ``CI=true``) without them."""
    return pg_stac, cog_server


# --------------------------------------------------------------------------- demo world


@pytest.fixture(scope="session")
def demo_items(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The offline demo world's ItemCollection path, generated once.

    It is cached next to pytest's temp dirs across sessions (``XSITS_CACHE_DIR``); notebook
    kernels inherit that environment variable.
    """
    old = os.environ.get("XSITS_CACHE_DIR")
    root = old or str(tmp_path_factory.getbasetemp().parent / "xsits-demo-cache")
    os.environ["XSITS_CACHE_DIR"] = root
    from xsits.demo import demo_catalog_path

    yield demo_catalog_path()
    if old is None:
        os.environ.pop("XSITS_CACHE_DIR", None)
    else:
        os.environ["XSITS_CACHE_DIR"] = old
