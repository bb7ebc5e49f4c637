"""Signing when reading: SAS tokens that expire during a run, re-signed at read time.

A real local Range server wants a SAS token on every request (HTTP 403 without one, or with
an expired or revoked one) and hands out tokens living 20 s from a token endpoint shaped like
Planetary Computer's SAS API. Its files are addressed path-style, as the Azurite emulator
addresses Azure Blob Storage (``http://host/{account}/{container}/...``).
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import Point

import xsits
from xsits.io import reader, signing
from xsits.ops import steps
from xsits.testing.scenes import WorldSpec
from xsits.testing.servers import CogServer
from xsits.testing.world import make_world

from helpers import written_values

POINTS = ((11.35, 48.05), (11.352, 48.051), (11.348, 48.049), (11.351, 48.0495))
SPEC = dict(points=POINTS[:1], start="2024-05-01", end="2024-05-30", revisit_days=5,
            bands=("B04", "B08", "SCL"), window_m=1280, blocksize=128)
LIFETIME = 20


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("sas")
    world = make_world(base / "world", WorldSpec(**SPEC))
    root = base / "root"
    (root / "pcacct").mkdir(parents=True)
    (root / "pcacct" / "s2").symlink_to(world.root, target_is_directory=True)
    with CogServer(world.root) as clean, CogServer(root, sas_lifetime=LIFETIME) as sas:
        yield world, clean, sas


@pytest.fixture(autouse=True)
def _fresh():
    signing.clear()
    reader.clear_cache()
    yield
    signing.clear()


def _source(world, base: str, tmp_path, points=POINTS):
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection",
                                "features": world.item_dicts(base)}))
    aoi = gpd.GeoDataFrame({"feature_id": [f"f{i}" for i in range(len(points))]},
                           geometry=[Point(p) for p in points], crs=4326)
    kw = dict(stac=str(path), bands=["B04", "B08", "SCL"], start=SPEC["start"],
              end=SPEC["end"], resolution=10, mode="patch", size=(12, 12))
    return xsits.batch.AoiSource(aoi, kw)


def _options(sas):
    return dict(pc_sas_url=sas.sas_url, pc_blob_hosts=(urlsplit(sas.url).netloc,))



def _slowly(ds):
    """A step that takes most of a token's life."""
    time.sleep(LIFETIME * 0.85)
    return ds


def test_unsigned_reads_are_refused(served, tmp_path):
    world, _, sas = served
    report = xsits.compute_all(_source(world, sas.url + "pcacct/s2/", tmp_path, POINTS[:1]),
                               [], out_dir=tmp_path / "out", progress=False)
    assert report.status.tolist() == ["failed"]  # no signing configured for this host
    assert "HTTP 403" in report.error[0]


def test_a_run_outlives_three_token_lifetimes(served, tmp_path):
    world, clean, sas = served
    want = xsits.compute_all(_source(world, clean.url, tmp_path), [],
                             out_dir=tmp_path / "clean", progress=False)
    signing.clear()
    reader.clear_cache()
    t0 = time.monotonic()
    with xsits.set_options(**_options(sas)):
        got = xsits.compute_all(_source(world, sas.url + "pcacct/s2/", tmp_path),
                                [steps.harmonize(), _slowly], out_dir=tmp_path / "sas",
                                progress=False, scheduler="synchronous")
    took = time.monotonic() - t0
    stats = sas.stats()
    assert took >= 3 * LIFETIME
    assert got.status.tolist() == ["written"] * len(POINTS), got.to_string()
    assert stats["tokens"] >= 3, stats  # refreshed before each expiry
    a, b = written_values(want), written_values(got)
    for fid in a:
        for name in a[fid]:
            want_values = a[fid][name]
            if name != "SCL":  # the reference was not harmonized
                want_values = np.where(want_values == 0, 0,
                                       np.maximum(want_values, 1001) - 1000)
            np.testing.assert_array_equal(b[fid][name], want_values)
    text = (tmp_path / "sas" / "manifest.json").read_text() + got.to_string()
    assert "sig=" not in text


@pytest.mark.parametrize("fast_reader", [True, False])
def test_revoked_token_is_replaced_once(served, tmp_path, fast_reader):
    world, _, sas = served
    with xsits.set_options(fast_reader=fast_reader, **_options(sas)):
        first = xsits.compute_all(_source(world, sas.url + "pcacct/s2/", tmp_path, POINTS[:1]),
                                  [], out_dir=tmp_path / "one", progress=False)
        tokens = sas.stats()["tokens"]
        sas.rotate_sas()  # every token handed out so far is now refused
        reader.clear_cache()
        from xsits.cube.load import configure_gdal

        configure_gdal()
        second = xsits.compute_all(_source(world, sas.url + "pcacct/s2/", tmp_path, POINTS[:1]),
                                   [], out_dir=tmp_path / "two", progress=False)
    stats = sas.stats()
    assert first.status.tolist() == second.status.tolist() == ["written"], second.to_string()
    assert stats["forbidden"] >= 1 and stats["tokens"] > tokens, stats
    a, b = written_values(first), written_values(second)
    for name in a["f0"]:
        np.testing.assert_array_equal(b["f0"][name], a["f0"][name])
