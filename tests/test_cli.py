"""The ``xsits`` command line: help, argument errors, exit codes, fetch against the local world."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from click.testing import CliRunner
from shapely.geometry import Point, Polygon

from xsits.cli import build_steps, main

from conftest import WORLD_END, WORLD_POINTS, WORLD_START


@pytest.fixture
def runner():
    return CliRunner()


def _points_file(tmp_path, ids=("p0", "p3"), extra=()):
    pts = {f"p{i}": Point(xy) for i, xy in enumerate(WORLD_POINTS)}
    names = [*ids, *(name for name, _ in extra)]
    geoms = [pts[i] for i in ids] + [g for _, g in extra]
    path = tmp_path / "points.geojson"
    gpd.GeoDataFrame({"pt_id": names}, geometry=geoms, crs=4326).to_file(path)
    return path


def _fetch_args(aoi, stac_url, out):
    return ["fetch", str(aoi), "--stac", stac_url, "--bands", "B04,B08,SCL", "--start",
            WORLD_START, "--end", WORLD_END, "--max-cloud", "100", "--resolution", "20",
            "--crs", "EPSG:3035", "--mode", "patch", "--size", "8x8", "--harmonize", "--mask",
            "--gapfill", "--format", "netcdf", "--out", str(out), "--workers", "2",
            "--id-column", "pt_id", "--no-progress"]


@pytest.mark.parametrize("args", [["--help"], ["fetch", "--help"], ["demo", "--help"],
                                  ["sample", "--help"]])
def test_help(runner, args):
    result = runner.invoke(main, args)
    assert result.exit_code == 0
    assert "Usage: " in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--size", "0x3"], "is not a size WxH"),
    (["--size", "ten"], "is not a size WxH"),
    (["--query", "{bad"], "not valid JSON"),
    (["--query", "[1]"], "must be a JSON object"),
    (["--scheduler", "bogus"], "use threads, processes"),
    (["--gapfill", "spline9"], "Invalid value for '--gapfill'"),
    (["--max-cloud", "120"], "Invalid value for '--max-cloud'"),
    (["--batch-size", "0"], "Invalid value for '--batch-size'"),
])
def test_bad_arguments_are_usage_errors(runner, tmp_path, args, message):
    aoi = _points_file(tmp_path)
    result = runner.invoke(main, ["fetch", str(aoi), *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_xsits_errors_are_one_line(runner, tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not geojson")
    result = runner.invoke(main, ["fetch", str(bad), "--no-progress"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: AOI file")
    aoi = _points_file(tmp_path)
    result = runner.invoke(main, ["fetch", str(aoi), "--id-column", "nope", "--no-progress"])
    assert result.exit_code == 1 and "has no column 'nope'" in result.output
    result = runner.invoke(main, ["fetch", str(aoi), "--id-column", "pt_id", "--stac",
                                  str(tmp_path / "missing.json"), "--no-progress",
                                  "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and result.output.startswith("Error: stac=")


def test_build_steps_order():
    assert [type(s).__name__ for s in build_steps(harmonize=True, mask=True, drop_cloudy=0.5,
                                                  gapfill="nearest")] == [
        "harmonize", "cloud_mask", "drop_cloudy", "gapfill"]
    assert [s.describe() for s in build_steps(smooth="savgol", composite="10D", mask=True)] == [
        "cloud_mask()", "composite(freq='10D', how='median')", "smooth(method='savgol')"]
    assert build_steps() == []


def test_fetch_end_to_end_and_rerun(runner, stac_url, tmp_path):
    bowtie = Polygon([(5.9, 45.2), (5.91, 45.21), (5.91, 45.2), (5.9, 45.21)])
    aoi = _points_file(tmp_path, extra=[("sea", Point(0.0, 0.0)), ("bowtie", bowtie)])
    out = tmp_path / "out"
    result = runner.invoke(main, _fetch_args(aoi, stac_url, out))
    assert result.exit_code == 1, result.output
    manifest = out / "manifest.json"
    assert result.stdout.strip().splitlines()[-1] == (
        f"written 2, skipped 0, empty 1, failed 1 → {manifest.absolute()}")
    assert "failed bowtie: feature 'bowtie': invalid geometry" in result.stderr
    doc = json.loads(manifest.read_text())
    assert doc["steps"] == ["harmonize()", "cloud_mask()", "gapfill(method='linear')"]
    assert doc["source"]["size"] == [8, 8] and doc["source"]["mode"] == "patch"
    assert sorted(p.name for p in out.glob("*.nc")) == [
        f"fid-{f}_patch_{WORLD_START}_{WORLD_END}.nc" for f in ("p0", "p3")]
    again = runner.invoke(main, _fetch_args(aoi, stac_url, out))
    assert again.exit_code == 1
    assert again.stdout.strip().splitlines()[-1].startswith(
        "written 0, skipped 2, empty 1, failed 1")


def test_fetch_subprocess_exit_zero(stac_url, tmp_path):
    aoi = _points_file(tmp_path, ids=("p4",), extra=[("sea", Point(0.0, 0.0))])
    exe = Path(sys.executable).with_name("xsits")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "xsits.cli"]
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    proc = subprocess.run([*cmd, *_fetch_args(aoi, stac_url, tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("written 1, skipped 0, empty 1, failed 0 → ")
    assert "Traceback" not in proc.stderr


def test_sample_end_to_end(runner, stac_url, tmp_path):
    import xsits
    from xsits.ops import steps

    aoi = _points_file(tmp_path, ids=("p0", "p1", "p3"), extra=[("sea", Point(0.0, 0.0))])
    out = tmp_path / "train.parquet"
    args = ["sample", str(aoi), "--out", str(out), "--stac", stac_url, "--bands",
            "B04,B08,SCL", "--start", WORLD_START, "--end", WORLD_END, "--harmonize", "--mask",
            "--gapfill", "--composite", "1MS", "--smooth", "whittaker", "--id-column", "pt_id",
            "--geometry", "--no-progress"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    table = gpd.read_parquet(out)
    assert result.stdout.strip() == f"{len(table)} rows, 3 points (1 without rows) → {out}"
    assert "no row for sea: " in result.stderr
    want = xsits.sample(xsits.read_aoi(aoi, id_column="pt_id"), stac=stac_url,
                        bands=("B04", "B08", "SCL"), start=WORLD_START, end=WORLD_END,
                        steps=[steps.harmonize(), steps.scl_mask(), steps.gapfill(),
                               steps.composite("1MS"), steps.smooth("whittaker")],
                        geometry=True, progress=False)
    pd.testing.assert_frame_equal(pd.DataFrame(table), pd.DataFrame(want))
    assert len(table) == 3 * 4 and table.pt_id.tolist()[::4] == ["p0", "p1", "p3"]
    again = runner.invoke(main, args)  # never overwritten unless asked
    assert again.exit_code == 1 and "already exists; pass overwrite=True" in again.output
    assert runner.invoke(main, [*args, "--window", "2"]).output.startswith(
        "Error: sample: window=2 must be an odd")


def test_demo_calls_run_demo(runner, tmp_path, monkeypatch):
    import xsits.cli

    calls = []

    def fake(out_dir=None, *, progress=True):
        calls.append((out_dir, progress))
        return pd.DataFrame({"feature_id": ["a", "b"], "status": ["written", status]})

    monkeypatch.setattr(xsits.cli, "run_demo", fake)
    status = "written"
    result = runner.invoke(main, ["demo", "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0 and calls == [(str(tmp_path), False)]
    status = "failed"
    assert runner.invoke(main, ["demo"]).exit_code == 1
    assert calls[-1] == (None, True)


@pytest.mark.parametrize("command", ["fetch", "sample"])
def test_dry_run_prints_the_cost_and_reads_no_pixel(runner, stac_url, tmp_path, command):
    import xsits

    aoi = _points_file(tmp_path, ids=("p0", "p1", "p3"))
    out = tmp_path / ("train.parquet" if command == "sample" else "out")
    args = [command, str(aoi), "--out", str(out), "--stac", stac_url, "--bands", "B04,SCL",
            "--start", WORLD_START, "--end", WORLD_END, "--id-column", "pt_id", "--dry-run"]
    if command == "fetch":
        args += ["--mode", "patch", "--size", "4x4"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    want = xsits.dry_run(xsits.read_aoi(aoi, id_column="pt_id"), stac=stac_url,
                         bands=("B04", "SCL"), start=WORLD_START, end=WORLD_END, mode="patch",
                         size=(4, 4) if command == "fetch" else (1, 1))
    assert result.stdout.strip() == str(want)
    assert want.features == 3 and " requests, " in str(want)
    assert not out.exists()
