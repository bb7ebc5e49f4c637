"""compute_all against the local STAC world with injected faults, and on a distributed cluster.

Every faulty run is compared with a fault-free reference run: features are written with exactly
the reference values (never with missing dates or NaN pixels), or reported ``failed``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time

import geopandas as gpd
import numpy as np
import pytest
import xarray as xr
from shapely.geometry import Point, Polygon

import xsits
from xsits.batch import AoiSource, compute_all
from xsits.ops import steps
from xsits.stac.query import StacQuery
from xsits.stac.search import open_client
from xsits.testing.servers import CogServer, FaultProxy

from conftest import WORLD_END, WORLD_POINTS, WORLD_START

OPEN = dict(bands=("B04", "B08", "SCL"), start=WORLD_START, end=WORLD_END, resolution=20,
            crs="EPSG:3035", mode="patch", size=(8, 8))
PIPELINE = [steps.harmonize(), steps.scl_mask(), steps.gapfill("linear")]
SECRET = "SECRETsig123"
IDS = ("p0", "p2", "p3", "p4")  # four distinct windows in four UTM zones


def _aoi(ids=IDS):
    pts = {f"p{i}": Point(xy) for i, xy in enumerate(WORLD_POINTS)}
    return xsits.read_aoi(gpd.GeoDataFrame({"feature_id": list(ids)},
                                           geometry=[pts[i] for i in ids], crs=4326))


def _rewriter(old: str, new: str, query: str = ""):
    """A pystac-client modifier pointing asset hrefs at another server (and 'signing' them)."""
    def modify(obj):
        if isinstance(obj, dict):
            for feat in obj.get("features", []):
                modify(feat)
            for asset in obj.get("assets", {}).values():
                asset["href"] = asset["href"].replace(old, new) + query
        elif hasattr(obj, "assets"):
            for asset in obj.assets.values():
                asset.href = asset.href.replace(old, new) + query
        elif isinstance(getattr(obj, "items", None), list):
            for item in obj.items:
                modify(item)
    return modify


def _client(stac_url, modifier):
    return open_client(StacQuery(stac=stac_url), modifier=modifier)


def _assert_same(report, reference):
    written = report[report.status.isin(["written", "skipped"])]
    assert len(written)
    for fid, path in zip(written.feature_id, written.path, strict=True):
        with xr.open_dataset(path) as got, xr.open_dataset(reference[fid]) as want:
            assert got.sizes["time"] == want.sizes["time"] == 13
            for name in want.data_vars:
                np.testing.assert_array_equal(got[name].values, want[name].values)
            assert not np.isnan(got.B04.values).all(axis=(1, 2)).any()


@pytest.fixture(scope="module")
def reference(stac_url, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    report = compute_all(AoiSource(_aoi(), {**OPEN, "stac": stac_url}), PIPELINE, out_dir=out,
                         progress=False)
    assert (report.status == "written").all(), report.to_string()
    return dict(zip(report.feature_id, report.path, strict=True))


def test_stac_api_500_and_429_are_retried(stac_url, reference, tmp_path):
    with FaultProxy(stac_url, error_rate=0.3, statuses=(500, 429), seed=1,
                    max_consecutive_faults=3) as proxy:
        report = compute_all(AoiSource(_aoi(), {**OPEN, "stac": proxy.url}), PIPELINE,
                             out_dir=tmp_path, progress=False, batch_size=2)
        stats = proxy.stats()
    assert report.status.tolist() == ["written"] * 4, report.to_string()
    assert stats["faults"] >= 1 and set(stats["by_status"]) >= {"200"}
    _assert_same(report, reference)


def test_cog_drops_and_truncations_are_retried(world, cog_server, stac_url, reference,
                                               tmp_path):
    with CogServer(world.root, fault_rate=0.1, seed=3) as bad:
        client = _client(stac_url, _rewriter(cog_server.url, bad.url))
        report = compute_all(AoiSource(_aoi(), {**OPEN, "stac": stac_url, "client": client}),
                             PIPELINE, out_dir=tmp_path, progress=False)
        stats = bad.stats()
    assert stats["dropped"] >= 3 and stats["truncated"] >= 3, stats
    assert report.status.tolist() == ["written"] * 4, report.to_string()
    _assert_same(report, reference)


def test_plain_cubes_retry_their_reads(world, cog_server, stac_url):
    """Retries live in the reader (xsits.io.retry): a user's own .compute() gets them too."""
    clean = xsits.open_cubes(_aoi(("p3",)), stac=stac_url, **OPEN)["p3"].compute()
    with CogServer(world.root, fault_rate=0.15, seed=5) as bad, \
            xsits.set_options(retry_delay=0.01):
        client = _client(stac_url, _rewriter(cog_server.url, bad.url))
        cube = xsits.open_cubes(_aoi(("p3",)), stac=stac_url, client=client, **OPEN)["p3"]
        got = cube.compute(scheduler="threads")
        stats = bad.stats()
    assert stats["faults"] >= 2, stats
    for name in clean.data_vars:
        np.testing.assert_array_equal(got[name].values, clean[name].values)


def test_signed_hrefs_work_and_never_leak(cog_server, stac_url, reference, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="xsits")
    sign = _rewriter(cog_server.url, cog_server.url, f"?se=2030-01-01&sig={SECRET}")
    report = compute_all(AoiSource(_aoi(("p0", "p3")), {**OPEN, "stac": stac_url,
                                                        "client": _client(stac_url, sign)}),
                         PIPELINE, out_dir=tmp_path, progress=False)
    assert report.status.tolist() == ["written", "written"]
    _assert_same(report, reference)
    for path in report.path:
        assert SECRET.encode() not in open(path, "rb").read()
    assert SECRET not in (tmp_path / "manifest.json").read_text()


def test_unreadable_cogs_fail_with_redacted_reason(world, cog_server, stac_url, tmp_path,
                                                   caplog):
    caplog.set_level(logging.INFO, logger="xsits")
    with CogServer(world.root, fault_rate=1.0, seed=0) as dead:
        modifier = _rewriter(cog_server.url, dead.url, f"?se=2030&sig={SECRET}")
        t0 = time.monotonic()
        report = compute_all(
            AoiSource(_aoi(("p0", "p3")), {**OPEN, "stac": stac_url,
                                           "client": _client(stac_url, modifier)}),
            PIPELINE, out_dir=tmp_path, progress=False, retries=1, retry_delay=0.05)
        elapsed = time.monotonic() - t0
    assert report.status.tolist() == ["failed", "failed"]
    assert report.error.str.len().min() > 10 and report.path.isna().all()
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
    text = report.to_string() + (tmp_path / "manifest.json").read_text() + caplog.text
    assert SECRET not in text
    assert elapsed < 60


def test_bad_features_are_recorded_others_written(stac_url, reference, tmp_path):
    bowtie = Polygon([(5.9, 45.2), (5.91, 45.21), (5.91, 45.2), (5.9, 45.21)])
    gdf = gpd.GeoDataFrame({"feature_id": ["p0", "sea", "bowtie", "p3"]},
                           geometry=[Point(WORLD_POINTS[0]), Point(0.0, 0.0), bowtie,
                                     Point(WORLD_POINTS[3])], crs=4326)
    aoi = xsits.read_aoi(gdf, on_invalid="drop")
    report = compute_all(AoiSource(aoi, {**OPEN, "stac": stac_url}), PIPELINE,
                         out_dir=tmp_path, progress=False)
    status = report.set_index("feature_id").status.to_dict()
    assert status == {"p0": "written", "p3": "written", "sea": "empty", "bowtie": "failed"}
    errors = report.set_index("feature_id").error
    assert "invalid geometry" in errors["bowtie"] and "no sentinel-2-l2a item" in errors["sea"]
    _assert_same(report, reference)
    doc = json.loads((tmp_path / "manifest.json").read_text())
    assert doc["counts"] == {"written": 2, "skipped": 0, "empty": 1, "failed": 1}


def test_intake_source_is_batched_like_an_aoi(stac_url, reference, tmp_path):
    from xsits.intake import SitsSource

    src = SitsSource(aoi=_aoi(("p2", "p4")), stac=stac_url, harmonize=True, mask=True,
                     gapfill="linear", **{k: v for k, v in OPEN.items()})
    report = compute_all(src, out_dir=tmp_path, progress=False, batch_size=1)
    assert report.status.tolist() == ["written", "written"], report.to_string()
    _assert_same(report, reference)  # the source's own steps were applied
    doc = json.loads((tmp_path / "manifest.json").read_text())
    assert doc["steps"] == ["harmonize()", "cloud_mask()", "gapfill(method='linear')"]


# --------------------------------------------------------------------------- distributed


class Slow:
    """A picklable step that takes its time (so that a worker can be killed mid-batch)."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __call__(self, ds):
        time.sleep(self.seconds)
        return ds


@pytest.fixture(scope="module")
def client():
    import cloudpickle
    from distributed import Client, LocalCluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    cl = Client(cluster)
    try:
        yield cl
    finally:
        cl.close()
        cluster.close()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_distributed_client_and_address(client, stac_url, reference, tmp_path):
    src = AoiSource(_aoi(), {**OPEN, "stac": stac_url})
    report = compute_all(src, PIPELINE, out_dir=tmp_path, scheduler=client.scheduler.address,
                         progress=False, batch_size=3)
    assert report.status.tolist() == ["written"] * 4, report.to_string()
    _assert_same(report, reference)
    again = compute_all(src, PIPELINE, out_dir=tmp_path, scheduler=client, progress=False)
    assert again.status.tolist() == ["skipped"] * 4


def test_worker_killed_mid_batch(client, stac_url, reference, tmp_path):
    import psutil

    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    killed = []

    def kill_soon():
        time.sleep(1.5)
        psutil.Process(victim).kill()
        killed.append(victim)

    cubes = xsits.open_cubes(_aoi(), stac=stac_url, **OPEN)
    killer = threading.Thread(target=kill_soon)
    killer.start()
    report = compute_all(cubes, [*PIPELINE, Slow(1.0)], out_dir=tmp_path, scheduler=client,
                         progress=False)
    killer.join()
    assert killed == [victim]
    assert set(report.status) <= {"written", "skipped"}, report.to_string()
    assert len(report) == 4
    _assert_same(report, reference)
    client.wait_for_workers(2, timeout=60)
    assert victim not in client.run(os.getpid).values()
