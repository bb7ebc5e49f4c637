"""Throttling honoured: HTTP 429 / 503 with Retry-After are waited out, per host, in a budget.

A real local Range server throttles a share of the requests for a while (as Planetary Computer
does, microsoft/PlanetaryComputer#457), answering 429 or 503 with ``Retry-After``.
"""

from __future__ import annotations

import json
import threading
import time

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import Point

import xsits
from xsits.errors import TransientError
from xsits.io import reader, retry
from xsits.ops import steps
from xsits.options import RetryPolicy
from xsits.testing.scenes import WorldSpec
from xsits.testing.servers import CogServer
from xsits.testing.world import make_world

from helpers import written_values

POINTS = ((11.35, 48.05), (11.352, 48.051), (11.348, 48.049))
SPEC = dict(points=POINTS[:1], start="2024-05-01", end="2024-06-29", revisit_days=5,
            bands=("B03", "B04", "B08", "SCL"), window_m=1280, blocksize=128)
SECRET = "SECRETsig123"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("throttle"), WorldSpec(**SPEC))


def _aoi():
    return gpd.GeoDataFrame({"feature_id": ["a", "b", "c"]},
                            geometry=[Point(p) for p in POINTS], crs=4326)


def _source(world, url, tmp_path, query=""):
    items = world.item_dicts(url)
    for it in items:
        for asset in it["assets"].values():
            asset["href"] += query
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    kw = dict(stac=str(path), bands=["B03", "B04", "B08", "SCL"], start=SPEC["start"],
              end=SPEC["end"], resolution=10, mode="patch", size=(16, 16))
    return xsits.batch.AoiSource(_aoi(), kw)



@pytest.mark.parametrize("retry_after", ["2", "date2"])
def test_throttling_is_waited_out(world, tmp_path, retry_after):
    with CogServer(world.root) as clean:
        reader.clear_cache()
        want = xsits.compute_all(_source(world, clean.url, tmp_path), [steps.harmonize()],
                                 out_dir=tmp_path / "clean", progress=False)
    reader.clear_cache()
    with CogServer(world.root, throttle_rate=0.3, throttle_seconds=20,
                   retry_after=retry_after) as slow:
        got = xsits.compute_all(_source(world, slow.url, tmp_path), [steps.harmonize()],
                                out_dir=tmp_path / "slow", progress=False)
        stats = slow.stats()
    # every feature written with the clean run's values although >= 10 answers were 429 / 503
    # (that a retry waits for Retry-After: test_budget_bounds_a_throttled_call; the run's
    # wall time depends on which requests are throttled, so it is not asserted here)
    assert got.status.tolist() == ["written"] * 3, got.to_string()
    assert stats["throttled"] >= 10, stats
    a, b = written_values(want), written_values(got)
    for fid in a:
        for name in a[fid]:
            np.testing.assert_array_equal(b[fid][name], a[fid][name])


def test_forbidden_and_missing_still_fail_at_once(world, tmp_path):
    reader.clear_cache()
    with CogServer(world.root, throttle_rate=0.3, throttle_seconds=20,
                   retry_after="2") as slow:
        items = world.item_dicts("")
        for it in items:  # every file of one item: 403 / of another: 404
            for i, status in ((0, 403), (5, 404)):
                if it is items[i]:
                    for asset in it["assets"].values():
                        slow.set_fault(asset["href"], status, times=-1)
        t0 = time.monotonic()
        with xsits.set_options(retry_budget=600):
            report = xsits.compute_all(_source(world, slow.url, tmp_path, f"?sig={SECRET}"),
                                       [], out_dir=tmp_path / "out", progress=False)
        took = time.monotonic() - t0
    # 403 (credentials) fails every feature reading that item, naming the href, at once
    assert report.status.tolist() == ["failed"] * 3, report.to_string()
    assert all("HTTP 403" in e and ".tif" in e for e in report.error)
    text = report.to_string() + (tmp_path / "out" / "manifest.json").read_text()
    assert SECRET not in text
    assert took < 60  # not waited out like a throttle (the budget is 600 s)


def test_missing_file_is_not_retried(world, tmp_path):
    reader.clear_cache()
    with CogServer(world.root) as cogs:
        items = world.item_dicts("")
        missing = items[5]["assets"]["B04"]["href"].lstrip("/")
        cogs.set_fault(missing, 404, times=-1)
        report = xsits.compute_all(_source(world, cogs.url, tmp_path), [],
                                   out_dir=tmp_path / "out", progress=False)
        asked = cogs.stats()["paths"].get("/" + missing, 0)
    assert report.status.tolist() == ["written"] * 3
    (lost,) = {(f["item"], f["href"]) for r in report.itertuples() for f in r.failed_reads}
    assert lost == (items[5]["id"], cogs.url + missing)
    # asked once per read (its band's header, the prefetch, the read...), never retried: a
    # retried read alone would ask RetryPolicy's 5 times
    assert 1 <= asked <= 4


def test_budget_bounds_a_throttled_call():
    calls = []

    def always_throttled():
        calls.append(time.monotonic())
        raise TransientError("HTTP 429 Too Many Requests", retry_after=0.2)

    policy = RetryPolicy(attempts=2, budget=1.0)
    t0 = time.monotonic()
    with pytest.raises(TransientError):
        retry.call(always_throttled, what="asking", policy=policy)
    took = time.monotonic() - t0
    assert 0.6 <= took <= 1.3
    assert len(calls) >= 4  # more tries than attempts=2: throttling is waited out by time
    gaps = np.diff(calls)
    assert gaps.min() >= 0.19  # Retry-After honoured


def test_backoff_is_jittered_without_retry_after():
    waits = []
    for _ in range(3):
        t = []

        def throttled(t=t):
            t.append(time.monotonic())
            if len(t) < 3:
                raise TransientError("HTTP 503")
            return "ok"

        assert retry.call(throttled, what="x", policy=RetryPolicy(backoff=0.05)) == "ok"
        waits.append(tuple(np.round(np.diff(t), 3)))
    assert len(set(waits)) > 1  # not the same waits every time


def test_host_gate_halves_requests_in_flight():
    gate = retry.HostGate()
    for _ in range(4):
        gate.enter("h")
    gate.leave("h", throttled_for=0.3)  # 3 left in flight: the limit becomes (3 + 1) // 2
    assert gate.limit("h") == 2 and gate.wait_left("h") > 0.2
    entered = threading.Event()

    def request() -> None:
        gate.enter("h")
        entered.set()

    t = threading.Thread(target=request)
    t.start()
    time.sleep(0.5)  # open again, but 3 in flight > 2 allowed
    assert not entered.is_set()
    gate.leave("h", None)  # 2 in flight, limit 3
    t.join(2)
    assert entered.is_set() and gate.limit("h") == 3
    assert gate.limit("other") is None  # other hosts are not slowed
