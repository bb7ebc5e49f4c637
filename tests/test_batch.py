"""The batch engine on in-memory cubes: values, resumability, manifest, isolation, batching."""

from __future__ import annotations

import json
import logging
import os
import pickle

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xsits
from xsits._common import redact
from xsits.batch import AoiSource, compute_all, summary_line
from xsits.batch import run as batch_run
from xsits.errors import BatchError
from xsits.ops import steps
from xsits.stac.search import NoItems
from xsits.testing.cubes import make_cube

PIPELINE = [steps.harmonize(), steps.scl_mask(), steps.gapfill("linear")]


def _cubes(ids=("a", "b", "c", "d", "e"), **kw):
    return xsits.Cubes({f: make_cube(feature_id=f, seed=i, chunks={"time": 2}, **kw)
                        for i, f in enumerate(ids)})


def _processed(ds, pipeline=PIPELINE):
    for s in pipeline:
        ds = s(ds)
    return ds.compute()


def _files(out):
    return sorted(p.name for p in out.iterdir() if p.name != "manifest.json")


# --------------------------------------------------------------------------- steps


def test_steps_describe_pickle_and_apply():
    pipe = [steps.harmonize(), steps.scl_mask(classes=[8, 9], keep_band=False),
            steps.drop_cloudy(0.3), steps.gapfill("nearest", max_gap="20D"),
            steps.to_patch(4, 2), steps.composite("1MS", "mean")]
    assert [steps.describe(s) for s in pipe] == [
        "harmonize()", "scl_mask(classes=(8, 9), keep_band=False)",
        "drop_cloudy(max_fraction=0.3)", "gapfill(method='nearest', max_gap='20D')",
        "to_patch(width=4, height=2)", "composite(freq='1MS', how='mean')"]
    assert pickle.loads(pickle.dumps(pipe)) == pipe
    assert repr(pipe[0]) == "xsits.ops.steps.harmonize()"
    assert steps.describe(_processed) == "test_batch._processed"
    ds = make_cube(n_times=4, shape=(4, 4))
    from xsits.ops.gapfill import gapfill
    from xsits.ops.harmonize import harmonize
    from xsits.ops.mask import scl_mask

    got = steps.gapfill("linear")(steps.scl_mask()(steps.harmonize()(ds)))
    want = gapfill(scl_mask(harmonize(ds)), method="linear")
    xr.testing.assert_identical(got, want)
    assert steps.to_patch(2, 2)(ds).sizes["x"] == 2
    assert steps.to_patch(3).output_attrs({"mode": "image"}) == {"mode": "patch"}


# --------------------------------------------------------------------------- core


def test_written_files_equal_in_memory_processing(tmp_path):
    cubes = _cubes()
    report = compute_all(cubes, PIPELINE, out_dir=tmp_path, progress=False, batch_size=2)
    assert list(report.columns) == ["feature_id", "status", "path", "n_dates", "seconds",
                                    "error", "failed_reads"]
    assert report.feature_id.tolist() == list(cubes)
    assert (report.status == "written").all()
    assert report.n_dates.tolist() == [6] * 5
    assert report.error.isna().all() and (report.seconds > 0).all()
    for fid, path in zip(report.feature_id, report.path, strict=True):
        assert os.path.basename(path) == f"fid-{fid}_image_2024-01-01_2024-02-20.nc"
        want = _processed(cubes[fid])
        with xr.open_dataset(path, mask_and_scale=False) as got:
            for band in ("B03", "B04", "B08"):
                np.testing.assert_array_equal(got[band].values, want[band].values)
            np.testing.assert_array_equal(got.SCL.values, want.SCL.values)
            assert got.attrs["feature_id"] == fid
    assert _files(tmp_path) == sorted(
        ["catalog.yaml", *(os.path.basename(p) for p in report.path)])
    import intake

    cat = intake.open_catalog(report.attrs["catalog"])  # the results catalog reopens them
    assert sorted(cat) == sorted(cubes)
    np.testing.assert_array_equal(cat["a"].read().B04.values, _processed(cubes["a"]).B04.values)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_table_batches_write_the_results_catalog(tmp_path, fmt):
    """Every format writes catalog.yaml; a Parquet / CSV batch reopens through Intake."""
    import intake

    cubes = _cubes(("a", "b"))
    report = compute_all(cubes, PIPELINE, out_dir=tmp_path, format=fmt, progress=False)
    assert (report.status == "written").all()
    assert report.attrs["catalog"] == str(tmp_path / "catalog.yaml")
    cat = intake.open_catalog(str(tmp_path / "catalog.yaml"))
    assert sorted(cat) == ["a", "b"]
    got = cat["b"].read()
    if not isinstance(got, pd.DataFrame):  # Intake's csv driver gives a dask DataFrame
        got = got.compute()
    want = _processed(cubes["b"]).B04.transpose("time", "y", "x").values.ravel()
    np.testing.assert_allclose(got["B04"].to_numpy(dtype=float), want, equal_nan=True)
    assert set(got["feature_id"].astype(str)) == {"b"}


def test_rerun_skips_everything_and_touches_nothing(tmp_path):
    cubes = _cubes(("a", "b", "c"))
    first = compute_all(cubes, PIPELINE, out_dir=tmp_path, progress=False)
    mtimes = {p: os.stat(p).st_mtime_ns for p in first.path}
    calls = []

    def spy(ds):
        calls.append(ds.attrs["feature_id"])
        return ds

    again = compute_all(cubes, [*PIPELINE, spy], out_dir=tmp_path, progress=False)
    assert again.status.tolist() == ["skipped"] * 3
    assert again.path.tolist() == first.path.tolist()
    assert again.n_dates.tolist() == [6, 6, 6]  # from the previous manifest
    assert calls == []  # nothing recomputed
    assert {p: os.stat(p).st_mtime_ns for p in again.path} == mtimes
    over = compute_all(cubes, PIPELINE, out_dir=tmp_path, progress=False, overwrite=True)
    assert over.status.tolist() == ["written"] * 3


def test_manifest_records_query_steps_and_statuses(tmp_path):
    cubes = _cubes(("a", "b"))
    cubes.missing.update({"sea": NoItems("no sentinel-2-l2a item between 2024-01-01 and "
                                         "2024-02-01 matches the query here"),
                          "x": "STAC search failed: no item was read"})  # text decides nothing
    report = compute_all(cubes, PIPELINE, out_dir=tmp_path, progress=False, format="netcdf")
    assert report.set_index("feature_id").status.to_dict() == {
        "a": "written", "b": "written", "sea": "empty", "x": "failed"}
    doc = json.loads((tmp_path / "manifest.json").read_text())
    assert doc["steps"] == ["harmonize()", "scl_mask()", "gapfill(method='linear')"]
    assert doc["format"] == "netcdf" and doc["complete"] is True
    assert doc["counts"] == {"written": 2, "skipped": 0, "empty": 1, "failed": 1}
    assert doc["query"]["collection"] == "sentinel-2-l2a"
    assert doc["query"]["start"] == "2024-01-01" and doc["query"]["mode"] == "image"
    assert doc["features"]["a"] == {
        "status": "written", "path": "fid-a_image_2024-01-01_2024-02-20.nc", "n_dates": 6,
        "seconds": doc["features"]["a"]["seconds"], "error": None}
    assert doc["features"]["x"]["error"] == "STAC search failed: no item was read"
    assert report.attrs["manifest"] == str(tmp_path / "manifest.json")
    assert summary_line(report) == (
        f"written 2, skipped 0, empty 1, failed 1 → {tmp_path / 'manifest.json'}")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_each_compute_holds_one_batch(tmp_path, monkeypatch):
    sizes = []
    real = batch_run.dask.compute

    def counting(*args, **kwargs):
        sizes.append(len(args))
        return real(*args, **kwargs)

    monkeypatch.setattr(batch_run.dask, "compute", counting)
    report = compute_all(_cubes(tuple("abcdefg")), [steps.harmonize()], out_dir=tmp_path,
                         progress=False, batch_size=3, scheduler="synchronous")
    assert sizes == [3, 3, 1]
    assert (report.status == "written").all()


def test_source_opens_cubes_batch_by_batch_and_not_again(tmp_path, monkeypatch):
    import geopandas as gpd
    from shapely.geometry import Point

    import xsits.cube.load

    aoi = xsits.read_aoi(gpd.GeoDataFrame(
        {"feature_id": list("pqrst")}, geometry=[Point(8 + i / 100, 49) for i in range(5)],
        crs=4326))
    opened = []

    def fake_open_cubes(sub, **kwargs):
        opened.append(list(sub.feature_id))
        assert xsits.get_options().retry.attempts == 5  # compute_all(retries=4) sets the policy
        cubes = xsits.Cubes()
        for fid in sub.feature_id:
            if fid == "r":
                cubes.missing[fid] = NoItems("no item found")
            else:
                cubes[fid] = make_cube(feature_id=fid, chunks={"time": 1}).assign_attrs(
                    start=kwargs["spec"].query.start, end=kwargs["spec"].query.end,
                    mode="image")
        return cubes

    monkeypatch.setattr(xsits.batch.plan, "open_cubes", fake_open_cubes)
    src = AoiSource(aoi, {"stac": "earth-search", "start": "2024-01-01", "end": "2024-03-01"})
    report = compute_all(src, [], out_dir=tmp_path, progress=False, batch_size=2)
    assert [len(o) for o in opened] == [2, 2, 1] and sorted(sum(opened, [])) == list("pqrst")
    assert report.set_index("feature_id").status.to_dict() == {
        "p": "written", "q": "written", "r": "empty", "s": "written", "t": "written"}
    assert os.path.basename(report.path[0]) == "fid-p_image_2024-01-01_2024-03-01.nc"
    opened.clear()
    again = compute_all(src, [], out_dir=tmp_path, progress=False, batch_size=2)
    assert opened == [["r"]]  # only the feature without output is searched again
    assert again.status.tolist() == ["skipped", "skipped", "empty", "skipped", "skipped"]
    doc = json.loads((tmp_path / "manifest.json").read_text())
    assert doc["source"]["stac"] == "https://earth-search.aws.element84.com/v1"


def test_source_computes_a_group_while_the_next_ones_search(tmp_path, monkeypatch):
    """The first group's features are computed while open_cubes is still searching."""
    import threading

    import geopandas as gpd
    from shapely.geometry import Point

    import xsits.cube.load

    aoi = xsits.read_aoi(gpd.GeoDataFrame(
        {"feature_id": ["a", "b"]}, geometry=[Point(8, 49), Point(20, 40)], crs=4326))
    computed = threading.Event()
    waited = []

    def fake_open_cubes(sub, on_group=None, **kwargs):
        cubes = xsits.Cubes()
        for fid in sub.feature_id:  # one group per feature
            cubes[fid] = make_cube(feature_id=fid).assign_attrs(
                start=kwargs["spec"].query.start, end=kwargs["spec"].query.end,
                mode="image")
            on_group(xsits.Cubes({fid: cubes[fid]}))
            if fid == "a":  # the second search "returns" only once "a" was computed
                waited.append(computed.wait(timeout=30))
        return cubes

    def mark(ds):
        if ds.attrs["feature_id"] == "a":
            computed.set()
        return ds

    monkeypatch.setattr(xsits.batch.plan, "open_cubes", fake_open_cubes)
    src = AoiSource(aoi, {"stac": "earth-search", "start": "2024-01-01", "end": "2024-03-01"})
    report = compute_all(src, [mark], out_dir=tmp_path, progress=False)
    assert waited == [True]
    assert report.status.tolist() == ["written", "written"]


def test_duck_typed_sources(tmp_path):
    class Batches:
        steps = [steps.harmonize()]  # used when steps=None, like the Intake source's

        def to_cubes_batches(self, batch_size):
            yield xsits.Cubes({"a": make_cube(feature_id="a")},
                              missing={"z": NoItems("nothing here")})
            yield xsits.Cubes({"b": make_cube(feature_id="b")})

    report = compute_all(Batches(), out_dir=tmp_path, progress=False)
    assert report.set_index("feature_id").status.to_dict() == {"a": "written", "z": "empty",
                                                               "b": "written"}
    doc = json.loads((tmp_path / "manifest.json").read_text())
    assert doc["steps"] == ["harmonize()"]


# --------------------------------------------------------------------------- faults


class Flaky:
    """Raises ``error`` for feature ``fid`` the first ``times`` calls (per process)."""

    calls: dict = {}

    def __init__(self, fid, error, times=99):
        self.fid, self.error, self.times = fid, error, times

    def __call__(self, ds):
        fid = ds.attrs["feature_id"]
        if fid == self.fid:
            n = Flaky.calls[fid] = Flaky.calls.get(fid, 0) + 1
            if n <= self.times:
                raise self.error
        return ds


def test_failing_feature_is_isolated_and_never_written(tmp_path):
    Flaky.calls.clear()
    cubes = _cubes(("a", "b", "c"))
    report = compute_all(cubes, [Flaky("b", ValueError("bad band math")), *PIPELINE],
                         out_dir=tmp_path, progress=False, retry_delay=0.01)
    assert report.status.tolist() == ["written", "failed", "written"]
    assert report.error[1] == "ValueError: bad band math"
    assert pd.isna(report.path[1]) and pd.isna(report.n_dates[1])
    assert not [f for f in _files(tmp_path) if "fid-b" in f]
    assert Flaky.calls["b"] == 1  # errors in the steps are not retried


def test_features_are_not_retried_as_a_whole(tmp_path):
    """Retries are per network request (xsits.io.retry, inside the reads); a step that fails is
    reported at once, even with an error that looks transient."""
    Flaky.calls.clear()
    report = compute_all(_cubes(("a", "b")), [Flaky("a", OSError("connection reset"), times=1)],
                         out_dir=tmp_path, progress=False, retry_delay=0.01)
    assert report.status.tolist() == ["failed", "written"]
    assert Flaky.calls["a"] == 1


def test_empty_after_steps_writes_nothing(tmp_path):
    report = compute_all(_cubes(("a", "b")), [lambda ds: ds.isel(time=slice(0, 0))],
                         out_dir=tmp_path, progress=False)
    assert report.status.tolist() == ["empty", "empty"]
    assert report.n_dates.tolist() == [0, 0]
    assert _files(tmp_path) == []


def test_interrupted_run_is_finished_by_running_again(tmp_path):
    cubes = _cubes(tuple("abcdef"))

    def interrupt(ds):
        if ds.attrs["feature_id"] == "d":
            raise KeyboardInterrupt
        return ds

    with pytest.raises(KeyboardInterrupt):
        compute_all(cubes, [*PIPELINE, interrupt], out_dir=tmp_path, progress=False,
                    batch_size=2, scheduler="synchronous")
    doc = json.loads((tmp_path / "manifest.json").read_text())
    assert doc["complete"] is False
    assert {f: v["status"] for f, v in doc["features"].items()} == {"a": "written",
                                                                   "b": "written"}
    done = set(_files(tmp_path))
    assert {"fid-a_image_2024-01-01_2024-02-20.nc", "fid-b_image_2024-01-01_2024-02-20.nc"} \
        <= done
    report = compute_all(cubes, PIPELINE, out_dir=tmp_path, progress=False, batch_size=2)
    assert report.status.tolist()[:2] == ["skipped", "skipped"]
    assert set(report.status) <= {"written", "skipped"}
    assert json.loads((tmp_path / "manifest.json").read_text())["complete"] is True
    for fid, path in zip(report.feature_id, report.path, strict=True):
        with xr.open_dataset(path) as got:  # every file under a final name is whole
            np.testing.assert_array_equal(got.B04.values, _processed(cubes[fid]).B04.values)
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_secrets_never_recorded(tmp_path, caplog):
    url = "https://acct.blob.core.windows.net/c/T32_B04.tif?st=2024&se=2030&sig=SECRET%2Bx"
    caplog.set_level(logging.INFO, logger="xsits")
    report = compute_all(_cubes(("a",)), [Flaky("a", OSError(f"HTTP 403 on /vsicurl/{url}"))],
                         out_dir=tmp_path, progress=False, retry_delay=0.01)
    assert report.status.tolist() == ["failed"]
    assert report.error[0] == ("OSError: HTTP 403 on /vsicurl/https://acct.blob.core.windows.net"
                               "/c/T32_B04.tif?<redacted>")
    assert "SECRET" not in (tmp_path / "manifest.json").read_text()
    assert "SECRET" not in caplog.text and "SECRET" not in report.to_string()
    assert redact("token=abc&x=1 and sig=zz") == "token=***&x=1 and sig=***"


def test_long_reasons_short_in_report_whole_in_manifest(tmp_path):
    """Issue 20 finding 9: never cut mid-word; the report shortens, manifest.json keeps all."""
    words = " ".join(f"word{i:03d}" for i in range(120))  # ~960 characters
    cubes = xsits.Cubes({"a": make_cube(feature_id="a")},
                        missing={"m": f"feature 'm': the load failed because {words}."})
    report = compute_all(cubes, [Flaky("a", ValueError(f"step broke: {words}."))],
                         out_dir=tmp_path, progress=False)
    doc = json.loads((tmp_path / "manifest.json").read_text())
    for fid, head in (("a", "ValueError: step broke: word000"),
                      ("m", "feature 'm': the load failed because word000")):
        short = report.set_index("feature_id").error[fid]
        whole = doc["features"][fid]["error"]
        assert short.startswith(head) and short.endswith(" …") and len(short) <= 300
        assert whole.startswith(head) and whole.endswith("word119.")  # the whole sentence
        assert whole.startswith(short[:-2])  # cut between two words, nothing else changed
        assert short[:-2].split()[-1] in whole.split()
    assert report.set_index("feature_id").status.to_dict() == {"a": "failed", "m": "failed"}


def test_child_logger_records_redacted(tmp_path, caplog):
    """Records of loggers below the redacted ones, made before or after a run, are redacted."""
    url = "https://acct.blob.core.windows.net/c/B04.tif?sig=SECRET"
    before = logging.getLogger("odc.loader.xsits_test_before")
    compute_all(_cubes(("a",)), [], out_dir=tmp_path, progress=False)
    after = logging.getLogger("odc.loader.xsits_test_after.deeper")  # created after the run
    caplog.set_level(logging.WARNING)
    before.warning("cannot read %s", url)
    after.error("cannot read %s", url)
    logging.getLogger("rasterio._env").warning("CURL error on %s", url)
    assert len(caplog.records) == 3
    assert "SECRET" not in caplog.text
    assert caplog.records[0].getMessage() == (
        "cannot read https://acct.blob.core.windows.net/c/B04.tif?<redacted>")
    logging.getLogger("somebody.else").warning("keep %s", "x?sig=1")  # others untouched
    assert caplog.records[-1].getMessage() == "keep x?sig=1"


# --------------------------------------------------------------------------- schedulers, UI


@pytest.mark.parametrize("scheduler", ["synchronous", "processes"])
def test_other_local_schedulers(tmp_path, scheduler):
    cubes = _cubes(("a", "b", "c"))
    report = compute_all(cubes, PIPELINE, out_dir=tmp_path, progress=False,
                         scheduler=scheduler, workers=2)
    assert (report.status == "written").all()
    with xr.open_dataset(report.path[2]) as got:
        np.testing.assert_array_equal(got.B08.values, _processed(cubes["c"]).B08.values)


def _stamp_options(ds):
    """A step that records, in the output, the options in force where it runs."""
    opts = xsits.get_options()
    return ds.assign_attrs(retries=opts.retry.attempts, retry_delay=opts.retry.backoff,
                           whole_files=int(opts.whole_files))


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_worker_processes_run_with_the_callers_options(tmp_path, scheduler):
    with xsits.set_options(whole_files=False):
        report = compute_all(_cubes(("a", "b")), [_stamp_options], out_dir=tmp_path,
                             progress=False, scheduler=scheduler, workers=2, retries=2,
                             retry_delay=0.5)
    assert xsits.get_options().whole_files and xsits.get_options().retry.attempts == 5
    for path in report.path:
        with xr.open_dataset(path) as got:
            assert (got.attrs["retries"], got.attrs["retry_delay"],
                    got.attrs["whole_files"]) == (3, 0.5, 0)


def test_a_runs_options_do_not_reach_other_threads(tmp_path):
    """compute_all(retries=...) holds in its own work; a thread outside it sees no change."""
    import threading

    inside, outside = threading.Event(), []
    done = threading.Event()

    def watch():  # a thread of the process, outside the run, polling while the run works
        inside.wait(10)
        outside.append((xsits.get_options().retry.attempts, xsits.get_options().retry.backoff))
        done.set()

    def step(ds):
        inside.set()
        done.wait(10)  # the outside thread looks while this step runs
        return _stamp_options(ds)

    watcher = threading.Thread(target=watch)
    watcher.start()
    report = compute_all(_cubes(("a",)), [step], out_dir=tmp_path, progress=False,
                         scheduler="threads", retries=1, retry_delay=0.7)
    watcher.join()
    assert outside == [(5, 0.2)]
    with xr.open_dataset(report.path[0]) as got:
        assert (got.attrs["retries"], got.attrs["retry_delay"]) == (2, 0.7)
    assert xsits.get_options().retry.attempts == 5


def test_options_scope_is_context_local_and_set_options_inside_changes_the_scope():
    from xsits.options import options_scope

    with options_scope(retries=3):
        with xsits.set_options(max_requests=7):
            assert (xsits.get_options().retry.attempts, xsits.get_options().max_requests) \
                == (3, 7)
        assert xsits.get_options().max_requests == 64
        got = []
        t = __import__("threading").Thread(
            target=lambda: got.append(xsits.get_options().retry.attempts))
        t.start()
        t.join()
        assert got == [5]
    assert xsits.get_options().retry.attempts == 5


def test_progress_bar_on_off_and_auto(tmp_path, capsys):
    cubes = _cubes(("a", "b"))
    cubes.missing["z"] = NoItems("no item found")
    compute_all(cubes, [], out_dir=tmp_path / "1", progress=True)
    err = capsys.readouterr().err
    assert "3/3" in err and "feature" in err
    compute_all(cubes, [], out_dir=tmp_path / "2", progress=False)
    compute_all(cubes, [], out_dir=tmp_path / "3")  # auto: stderr is not a terminal here
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"scheduler": "bogus"}, "scheduler='bogus' is unknown"),
    ({"steps": [1]}, "steps\\[0\\] = 1 is not callable"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"format": "tiff"}, "unknown export format"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    args = {"steps": [], "out_dir": tmp_path, "progress": False, **kwargs}
    with pytest.raises(xsits.errors.XsitsError, match=match):
        compute_all(_cubes(("a",)), **args)


def test_bad_input():
    with pytest.raises(BatchError, match="pass a dict of cubes"):
        compute_all([1, 2], progress=False)
    with pytest.raises(BatchError, match="not an xarray.Dataset"):
        compute_all({"a": 1}, progress=False)
