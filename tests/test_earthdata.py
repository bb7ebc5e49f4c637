"""NASA LP DAAC's HLS with an Earthdata bearer token, against a real COG server on 127.0.0.1.

The world: HLS S30 items in CMR-STAC's shape (:mod:`xsits.testing.sensors`, shape
``nasa-hls``: ``lp-prod-protected/HLSS30.020/...`` hrefs), served by a
:class:`~xsits.testing.servers.CogServer` that wants ``Authorization: Bearer <token>`` under
``lp-prod-protected/`` and answers, as LP DAAC does, with a redirect to a signed URL on
another host name that refuses any ``Authorization`` header (as S3 does). The token comes
from ``$EARTHDATA_TOKEN``; the host allow-list is the option ``earthdata_hosts``.
"""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import urlsplit

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from shapely.geometry import Point

import xsits
from xsits.batch import AoiSource
from xsits.io import earthdata, reader
from xsits.testing.scenes import WorldSpec
from xsits.testing.sensors import make_sensor_world
from xsits.testing.servers import CogServer

TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.test-earthdata-token.c2lnbmF0dXJl"
WRONG = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.a-wrong-token.c2lnbmF0dXJl"
SPEC = WorldSpec(points=((11.35, 48.05),), window_m=1280, blocksize=128, start="2024-06-02",
                 end="2024-06-12", revisit_days=7, seed=3)
LOAD = dict(start=SPEC.start, end=SPEC.end, resolution=20, crs="EPSG:32632", mode="patch",
            size=(8, 8))


@pytest.fixture(scope="module")
def lpdaac(tmp_path_factory):
    base = tmp_path_factory.mktemp("earthdata")
    world = make_sensor_world(base / "nasa", SPEC, "nasa-hls")
    with CogServer(world.root, bearer_token=TOKEN, bearer_prefix="lp-prod-protected/",
                   bearer_redirect=True) as cogs:
        path = world.write_item_collection(base / "items.json", cogs.url)
        yield {"world": world, "cogs": cogs, "path": str(path),
               "hosts": (urlsplit(cogs.url).netloc,)}


@pytest.fixture(autouse=True)
def _fresh(lpdaac):
    reader.clear_cache()
    lpdaac["cogs"].reset_stats()
    yield


def _aoi():
    return gpd.GeoDataFrame({"feature_id": ["p0"]}, geometry=[Point(11.35, 48.05)], crs=4326)


def _open(lpdaac, **kw):
    return xsits.open_cubes(_aoi(), stac=lpdaac["path"], collection="HLSS30.v2.0", **LOAD,
                            **kw)["p0"]


def _truth(world, ds, key: str) -> np.ndarray:
    """The files' pixels under the cube's pixel centres, date by date."""
    items = sorted(world.items, key=lambda it: it["properties"]["datetime"])
    out = []
    for it in items:  # (no proj:* in NASA's items: the file's own transform; 20 m centres)
        with rasterio.open(world.asset_path(it["id"], key)) as f:
            t = f.transform
        rows = np.floor((t.f - ds.y.values) / 30).astype(int)
        cols = np.floor((ds.x.values - t.c) / 30).astype(int)
        out.append(world.truth(it["id"], key)[np.ix_(rows, cols)])
    return np.stack(out)


def test_the_real_items_point_to_lp_daac_hosts():
    from xsits.testing.sensors import template

    item = template("nasa-HLSS30.v2.0-2022.json")
    hrefs = [a["href"] for k, a in item["assets"].items() if k != "metadata"]
    assert all(earthdata.is_earthdata(h) for h in hrefs)  # lp-prod-protected and -public
    assert {urlsplit(h).path.split("/")[1] for h in hrefs} == {"lp-prod-protected",
                                                                 "lp-prod-public"}
    assert not earthdata.is_earthdata(item["assets"]["metadata"]["href"])  # cmr: no token


@pytest.mark.parametrize("fast", [True, False], ids=["xsits-reader", "gdal"])
def test_the_token_reads_lp_daac_files_and_never_follows_a_redirect(lpdaac, monkeypatch, fast):
    monkeypatch.setenv("EARTHDATA_TOKEN", TOKEN)
    with xsits.set_options(earthdata_hosts=lpdaac["hosts"], fast_reader=fast):
        ds = _open(lpdaac).compute()
        stats = reader.last_load_stats()
    assert list(ds.data_vars) == ["B03", "B04", "B8A", "Fmask"]  # the registry's defaults
    assert stats["fast" if fast else "gdal"] > 0 and stats["gdal" if fast else "fast"] == 0
    for key in ("B04", "Fmask"):
        np.testing.assert_array_equal(ds[key].values, _truth(lpdaac["world"], ds, key))
    served = lpdaac["cogs"].stats()
    assert served["authorized"] > 0 and served["redirected_requests"] > 0
    assert served.get("unauthorized", 0) == 0 and served.get("auth_after_redirect", 0) == 0


def _cubes(lpdaac):
    return xsits.open_cubes(_aoi(), stac=lpdaac["path"], collection="HLSS30.v2.0", **LOAD)


def test_no_token_is_sent_to_hosts_outside_the_allow_list(lpdaac, monkeypatch):
    monkeypatch.setenv("EARTHDATA_TOKEN", TOKEN)  # the default hosts: LP DAAC's, not ours
    href = json.loads(open(lpdaac["path"]).read())["features"][0]["assets"]["B04"]["href"]
    assert earthdata.headers(href) == {} and earthdata.gdal_env(href) == {}
    with xsits.set_options(earthdata_hosts=lpdaac["hosts"]):
        assert earthdata.headers(href) == {"Authorization": f"Bearer {TOKEN}"}
    cubes = _cubes(lpdaac)
    assert "p0" not in cubes and re.search("HTTP 401.*EARTHDATA_TOKEN", cubes.missing["p0"])
    served = lpdaac["cogs"].stats()
    assert served["unauthorized"] > 0 and served["authorized"] == 0


@pytest.mark.parametrize("token", [None, WRONG], ids=["unset", "wrong"])
def test_a_refused_token_names_the_variable_never_the_token(lpdaac, monkeypatch, tmp_path,
                                                            caplog, token):
    if token is None:
        monkeypatch.delenv("EARTHDATA_TOKEN", raising=False)
    else:
        monkeypatch.setenv("EARTHDATA_TOKEN", token)
    caplog.set_level(logging.DEBUG, logger="xsits")
    with xsits.set_options(earthdata_hosts=lpdaac["hosts"]):
        why = _cubes(lpdaac).missing["p0"]
        report = xsits.compute_all(
            AoiSource(_aoi(), {"stac": lpdaac["path"], "collection": "HLSS30.v2.0", **LOAD}),
            out_dir=tmp_path / "out", progress=False, retries=0)
    assert "HTTP 401" in why and "EARTHDATA_TOKEN" in why
    assert list(report.status) == ["failed"] and "HTTP 401" in report.error.iloc[0]
    manifest = (tmp_path / "out" / "manifest.json").read_text()
    assert "HTTP 401" in manifest
    assert lpdaac["cogs"].stats()["unauthorized"] > 0
    for text in (why, report.to_csv(), manifest, caplog.text,
                 json.dumps(report.attrs, default=str)):
        assert WRONG not in text and TOKEN not in text and "Bearer" not in text



def test_the_token_of_a_gdal_read_on_the_main_thread_stays_its_own(monkeypatch):
    """rasterio sets the main thread's GDAL options for the whole process: the read moves."""
    import threading

    from rasterio._env import get_gdal_config
    from rasterio.env import getenv

    from xsits.io.earthdata import with_gdal_token

    monkeypatch.setenv("EARTHDATA_TOKEN", TOKEN)
    href = "https://data.lpdaac.earthdatacloud.nasa.gov/lp-prod-protected/a/B04.tif"
    assert threading.current_thread() is threading.main_thread()
    seen: dict[str, object] = {}

    def read() -> str:
        seen["reader"] = getenv().get("GDAL_HTTP_HEADERS")
        other = threading.Thread(target=lambda: seen.update(
            other=get_gdal_config("GDAL_HTTP_HEADERS")))
        other.start()
        other.join()
        return "read"

    assert with_gdal_token(href, read) == "read"
    assert seen["reader"] == f"Authorization: Bearer {TOKEN}"
    assert seen["other"] is None  # another thread's GDAL reads never see the token
    # a read without a token stays on the calling thread
    assert with_gdal_token("https://example.com/a.tif", threading.current_thread) is \
        threading.main_thread()


def test_the_throttle_probe_sends_the_token_to_lp_daac_only(lpdaac, monkeypatch):
    """The one-byte request that reads a throttling host's Retry-After (urllib, not obstore)
    carries the token to LP DAAC and not on to the host LP DAAC redirects to."""
    from xsits.io import fetch

    monkeypatch.setenv("EARTHDATA_TOKEN", TOKEN)
    item = json.loads(open(lpdaac["path"]).read())["features"][0]
    href = item["assets"]["B04"]["href"]
    assert "lp-prod-protected/" in href
    fetch.RETRY_AFTER_SEEN.clear()
    with xsits.set_options(earthdata_hosts=lpdaac["hosts"]):
        assert fetch._retry_after(href) is None  # answered: no throttling, no header
    served = lpdaac["cogs"].stats()
    assert served["authorized"] == 1 and served["redirected_requests"] == 1
    assert served.get("unauthorized", 0) == 0 and served.get("auth_after_redirect", 0) == 0
