"""Landsat and HLS presets in their test worlds, and Sentinel-2 + Landsat as one time series.

Worlds: :mod:`xsits.testing.sensors` (Landsat C2 L2 shaped as Planetary Computer's items,
served path-style with SAS tokens as Azure Blob Storage; as Earth Search's, in a
requester-pays bucket of a local S3; HLS S30 as NASA's CMR-STAC items and as Planetary
Computer's). Masks and scales are computed here by hand from the files' values.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner
from shapely.geometry import Point

import xsits
from xsits.cli import main as cli_main
from xsits.cube.spec import CubeSpec
from xsits.errors import QueryError
from xsits.intake import SitsSource
from xsits.io import reader, signing
from xsits.ops.mask import cloud_mask
from xsits.ops.reflectance import to_reflectance
from xsits.stac.collections import CLASS_BANDS, COLLECTIONS, LANDSAT_QA_PIXEL, lookup
from xsits.stac.query import StacQuery
from xsits.testing.scenes import WorldSpec
from xsits.testing.sensors import make_sensor_world
from xsits.testing.servers import CogServer
from xsits.testing.world import make_world

POINTS = ((11.35, 48.05), (11.354, 48.052), (11.346, 48.048))
SPEC = dict(points=POINTS[:1], window_m=1280, blocksize=128)
LANDSAT = WorldSpec(**SPEC, start="2024-05-03", end="2024-07-31", revisit_days=8, seed=7)
S2 = WorldSpec(**SPEC, start="2024-05-01", end="2024-07-31", revisit_days=5, seed=0,
               bands=("B02", "B03", "B04", "B8A", "B11", "B12", "SCL"))
HLS = WorldSpec(**SPEC, start="2024-06-02", end="2024-06-30", revisit_days=7, seed=3)


def _aoi(points=POINTS):
    return gpd.GeoDataFrame({"feature_id": [f"p{i}" for i in range(len(points))]},
                            geometry=[Point(p) for p in points], crs=4326)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("sensors")
    landsat = make_sensor_world(base / "landsat", LANDSAT, "pc-landsat")
    hls_pc = make_sensor_world(base / "hls-pc", HLS, "pc-hls")
    hls_nasa = make_sensor_world(base / "hls-nasa", HLS, "nasa-hls")
    s2 = make_world(base / "s2", S2)
    root = base / "blob"
    (root / "landsateuwest").mkdir(parents=True)
    (root / "landsateuwest" / "landsat-c2").symlink_to(landsat.root / "landsat-c2")
    (root / "hls2euwest").mkdir()
    (root / "hls2euwest" / "hls2").symlink_to(hls_pc.root / "hls2")
    with CogServer(base) as plain, CogServer(root, sas_lifetime=300) as sas:
        paths = {
            "landsat": landsat.write_item_collection(base / "landsat.json",
                                                     sas.url + "landsateuwest/"),
            "hls-pc": hls_pc.write_item_collection(base / "hls-pc.json", sas.url + "hls2euwest/"),
            "hls-nasa": hls_nasa.write_item_collection(base / "hls-nasa.json",
                                                       plain.url + "hls-nasa/"),
            "s2": s2.write_item_collection(base / "s2.json", plain.url + "s2/"),
        }
        opts = dict(pc_sas_url=sas.sas_url, pc_blob_hosts=(urlsplit(sas.url).netloc,))
        yield {"landsat": landsat, "hls-pc": hls_pc, "hls-nasa": hls_nasa, "s2": s2,
               "paths": {k: str(v) for k, v in paths.items()}, "opts": opts}


@pytest.fixture(autouse=True)
def _fresh():
    signing.clear()
    reader.clear_cache()
    yield


def _truth_at(world, item: dict, key: str, ds) -> np.ndarray:
    """The file's pixel under each cube pixel centre (nearest), by hand."""
    t = item["properties"]["proj:transform"]
    arr = world.truth(item["id"], key)
    rows = np.floor((t[5] - ds.y.values) / 30).astype(int)  # 20 m centres: never on an edge
    cols = np.floor((ds.x.values - t[2]) / 30).astype(int)
    return arr[np.ix_(rows, cols)]


def _qa_masked(qa: np.ndarray) -> np.ndarray:
    """Landsat C2 QA_PIXEL rule by hand: fill, dilated, cirrus, cloud, shadow, snow bits;
    cloud confidence medium / high; shadow, snow, cirrus confidence high."""
    qa = qa.astype(np.int64)
    bits = (qa & 0b111111) != 0
    conf = (((qa >> 8) & 3) >= 2) | (((qa >> 10) & 3) == 3) | (((qa >> 12) & 3) == 3) | (
        ((qa >> 14) & 3) == 3)
    return bits | conf


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", ["pc-landsat-c2-l2-2024.json", "es-landsat-c2-l2-2023.json"])
def test_landsat_entry_matches_real_items(name):
    path = Path(xsits.testing.__file__).parent / "data" / "real" / name
    item = json.loads(path.read_text())
    entry = lookup(item["collection"])
    fields = {f["name"]: (f["offset"], f["length"])
              for f in item["assets"]["qa_pixel"]["classification:bitfields"]}
    for flag in LANDSAT_QA_PIXEL:
        assert fields[flag.name] == (flag.offset, flag.length)
    for key in ("coastal", "blue", "green", "red", "nir08", "swir16", "swir22", "lwir11",
                "qa_pixel", "qa_aerosol"):
        rb = item["assets"][key]["raster:bands"][0]
        band = entry.band(key)
        assert (band.dtype, band.nodata) == (rb["data_type"], rb["nodata"])
        assert (band.scale, band.offset) == (rb.get("scale", 1.0), rb.get("offset", 0.0))


def test_hls_entry_names_every_band_of_nasa_items():
    item = json.loads((Path(xsits.testing.__file__).parent / "data" / "real"
                       / "nasa-HLSS30.v2.0-2022.json").read_text())
    entry = lookup(item["collection"])
    assert entry.id == "hls2-s30"
    assert {k for k in item["assets"] if k not in ("browse", "metadata")} == {
        b.name for b in entry.bands}


def test_class_bands_are_the_mask_qa_and_label_bands():
    assert CLASS_BANDS == {"SCL", "scl", "qa_pixel", "qa_radsat", "qa_aerosol", "Fmask",
                           "fmask", "mask", "label", "labels"}
    reflectance = {n for c in COLLECTIONS.values() for b in c.bands
                   if b.role == "reflectance" for n in b.names}
    assert not reflectance & CLASS_BANDS


# --------------------------------------------------------------------------- Landsat


def test_pc_landsat_loads_masks_and_scales(served):
    w = served["landsat"]
    with xsits.set_options(**served["opts"]):
        cubes = xsits.open_cubes(_aoi(POINTS[:1]), stac=served["paths"]["landsat"],
                                 collection="landsat-c2-l2", bands=["red", "nir08", "qa_pixel"],
                                 start=LANDSAT.start, end=LANDSAT.end, resolution=20,
                                 crs="EPSG:32632", mode="patch", size=(16, 16))
        ds = cubes["p0"].compute()
    assert ds.red.dtype == np.uint16 and ds.qa_pixel.dtype == np.uint16
    assert ds.red.attrs["scale"] == 2.75e-05 and ds.red.attrs["offset"] == -0.2
    items = {it["id"][17:25]: it for it in w.item_dicts("/")}
    assert ds.sizes["time"] == len(items)
    for i, t in enumerate(ds.time.values):
        item = items[str(t)[:10].replace("-", "")]
        np.testing.assert_array_equal(ds.red.values[i], _truth_at(w, item, "red", ds))
        np.testing.assert_array_equal(ds.qa_pixel.values[i], _truth_at(w, item, "qa_pixel", ds))
    masked = cloud_mask(ds)
    by_hand = _qa_masked(ds.qa_pixel.values) | (ds.red.values == 0)
    assert by_hand.any() and (~by_hand).any()
    np.testing.assert_array_equal(np.isnan(masked.red.values), by_hand)
    refl = to_reflectance(masked)
    valid = ~by_hand
    expected = ds.red.values[valid].astype("float64") * 2.75e-05 - 0.2
    np.testing.assert_allclose(refl.red.values[valid], expected, atol=1e-6)
    assert refl.qa_pixel.dtype == np.uint16  # QA never converted
    grown = cloud_mask(ds, dilate=1)
    assert np.isnan(grown.red.values).sum() > np.isnan(masked.red.values).sum()


def test_pc_landsat_without_bands_loads_the_registry_defaults(served):
    with xsits.set_options(**served["opts"]):
        cubes = xsits.open_cubes(_aoi(POINTS[:1]), stac=served["paths"]["landsat"],
                                 collection="landsat-c2-l2", start=LANDSAT.start,
                                 end=LANDSAT.start, resolution=30, mode="patch", size=(2, 2))
    assert list(cubes["p0"].data_vars) == list(lookup("landsat-c2-l2").default_bands)


def test_a_query_without_bands_takes_the_registry_defaults():
    assert StacQuery(collection="landsat-c2-l2").bands == ("green", "red", "nir08", "qa_pixel")
    assert StacQuery(collection="HLSL30.v2.0").bands == ("B03", "B04", "B05", "Fmask")
    assert StacQuery().bands == lookup("sentinel-2-l2a").default_bands
    with pytest.raises(QueryError, match=r"collection='my-own' is not in the registry.*bands="):
        StacQuery(collection="my-own")
    assert StacQuery(collection="my-own", bands=["b1"]).bands == ("b1",)
    # a spec changing collection: the old collection's defaults become the new one's
    spec = CubeSpec.from_kwargs(CubeSpec(), collection="hls2-s30")
    assert spec.query.bands == ("B03", "B04", "B8A", "Fmask")
    mine = CubeSpec.from_kwargs(bands=["B04"])
    assert CubeSpec.from_kwargs(mine, collection="hls2-s30").query.bands == ("B04",)


def test_cli_fetch_without_bands_writes_the_registry_defaults(served, tmp_path):
    aoi = tmp_path / "aoi.geojson"
    _aoi(POINTS[:1]).to_file(aoi)
    args = ["fetch", str(aoi), "--stac", served["paths"]["landsat"], "--collection",
            "landsat-c2-l2", "--start", LANDSAT.start, "--end", LANDSAT.start, "--resolution",
            "30", "--mode", "patch", "--size", "2x2", "--out", str(tmp_path / "out"),
            "--no-progress"]
    with xsits.set_options(**served["opts"]):
        result = CliRunner().invoke(cli_main, args)
    assert result.exit_code == 0, result.output
    (path,) = (tmp_path / "out").glob("*.nc")
    with xr.open_dataset(path) as back:
        assert list(back.data_vars) == list(lookup("landsat-c2-l2").default_bands)
    source = SitsSource(aoi=str(aoi), stac=served["paths"]["landsat"],  # Intake: the same
                        collection="landsat-c2-l2", start=LANDSAT.start, end=LANDSAT.end)
    assert source.spec.query.bands == lookup("landsat-c2-l2").default_bands


# --------------------------------------------------------------------------- HLS


@pytest.mark.parametrize("shape", ["hls-nasa", "hls-pc"])
def test_hls_loads_masks_and_scales(served, shape):
    w = served[shape]
    with xsits.set_options(**served["opts"]):
        cubes = xsits.open_cubes(_aoi(POINTS[:1]), stac=served["paths"][shape],
                                 collection=w.collection, bands=["B04", "B8A", "Fmask"],
                                 start=HLS.start, end=HLS.end, resolution=20, mode="patch",
                                 crs="EPSG:32632", size=(16, 16))
        ds = cubes["p0"].compute()
    assert ds.B04.dtype == np.int16 and ds.B04.attrs["nodata"] == -9999
    assert ds.Fmask.dtype == np.uint8
    fmask = ds.Fmask.values.astype(int)
    by_hand = (fmask == 255) | ((fmask & 0b11111) != 0) | (ds.B04.values == -9999)
    assert by_hand.any() and (~by_hand).any()
    out = to_reflectance(cloud_mask(ds))
    np.testing.assert_array_equal(np.isnan(out.B04.values), by_hand)
    np.testing.assert_allclose(out.B04.values[~by_hand],
                               ds.B04.values[~by_hand].astype("float64") * 1e-4, atol=1e-7)


# --------------------------------------------------------------------------- combined


def _clear_dates(cubes) -> dict[str, int]:
    """Per point: dates whose centre pixel has a clear red value."""
    out = {}
    for fid, ds in cubes.items():
        red = ds["red"].compute()
        out[fid] = int(np.isfinite(red.values[:, red.sizes["y"] // 2, red.sizes["x"] // 2]).sum())
    return out


def test_sentinel_2_and_landsat_give_more_clear_dates(served, tmp_path):
    stac = {"sentinel-2-l2a": served["paths"]["s2"],
            "landsat-c2-l2": served["paths"]["landsat"]}
    kw = dict(stac=stac, bands=["red", "nir"], start=S2.start, end=S2.end, resolution=30,
              mode="patch", size=(3, 3), crs="EPSG:32632")
    with xsits.set_options(**served["opts"]):
        both = xsits.open_combined(_aoi(), ["sentinel-2-l2a", "landsat-c2-l2"], **kw)
        s2 = xsits.open_combined(_aoi(), ["sentinel-2-l2a"], **kw)
        ls = xsits.open_combined(_aoi(), ["landsat-c2-l2"], **kw)
        n_both, n_s2, n_ls = _clear_dates(both), _clear_dates(s2), _clear_dates(ls)
        ds = both["p0"].compute()
        assert set(ds.sensor.values) == {"Sentinel-2 MSI", "Landsat OLI"}
        assert ds.sizes["time"] == s2["p0"].sizes["time"] + ls["p0"].sizes["time"]
        assert bool((np.diff(ds.time.values) >= np.timedelta64(0)).all())
        for fid in n_both:
            assert n_both[fid] == n_s2[fid] + n_ls[fid]
            assert n_both[fid] > max(n_s2[fid], n_ls[fid]) > 0
        report = xsits.compute_all(both, out_dir=tmp_path / "out", progress=False)
    assert set(report.status) == {"written"}
    with xr.open_dataset(report.path.iloc[0]) as back:
        assert back.sizes["time"] == ds.sizes["time"]
        np.testing.assert_allclose(back.red.values, ds.red.values, equal_nan=True)


def test_bandpass_adjusts_only_sentinel_2_dates(served):
    kw = dict(stac={"sentinel-2-l2a": served["paths"]["s2"],
                    "landsat-c2-l2": served["paths"]["landsat"]},
              bands=["red"], start=S2.start, end="2024-05-31", resolution=30, mode="patch",
              size=(3, 3), crs="EPSG:32632")
    with xsits.set_options(**served["opts"]):
        plain = xsits.open_combined(_aoi(POINTS[:1]), ["sentinel-2-l2a", "landsat-c2-l2"],
                                    **kw)["p0"].compute()
        adjusted = xsits.open_combined(_aoi(POINTS[:1]), ["sentinel-2-l2a", "landsat-c2-l2"],
                                       bandpass=True, **kw)["p0"].compute()
    is_s2 = plain.sensor.values == "Sentinel-2 MSI"
    slope = np.where(plain.platform.values == "Sentinel-2A", 0.9765, 0.9761)
    icept = np.where(plain.platform.values == "Sentinel-2A", 0.0009, 0.001)
    want = plain.red.values * slope[:, None, None] + icept[:, None, None]
    np.testing.assert_allclose(adjusted.red.values[is_s2], want[is_s2], rtol=1e-5,
                               equal_nan=True)
    np.testing.assert_array_equal(adjusted.red.values[~is_s2], plain.red.values[~is_s2])


def _point_series(ds: xr.Dataset, steps=(), indices=()) -> xr.Dataset:
    """A combined cube's centre pixel (its window's mean) after ``steps`` and ``indices``."""
    for step in steps:
        ds = step(ds)
    if indices:
        ds = ds.assign(ds.sits.indices(list(indices)).data_vars)
    return ds.mean(("y", "x"), skipna=True) if ds.sizes["x"] > 1 else ds.isel(y=0, x=0)


@pytest.mark.parametrize(("window", "steps", "indices", "dilate"), [
    (1, (), (), 0),  # each collection without cubes (the fast point path), then merged
    (1, (xsits.steps.gapfill(),), ("NDVI",), 1),  # steps on the merged series
    (3, (), ("NDVI",), 1),  # through the combined cubes, clouds grown inside the window
])
def test_sample_of_several_collections_is_the_combined_cube_at_the_point(served, window, steps,
                                                                         indices, dilate):
    stac = {"sentinel-2-l2a": served["paths"]["s2"],
            "landsat-c2-l2": served["paths"]["landsat"]}
    kw = dict(stac=stac, bands=["red", "nir"], start=S2.start, end=S2.end, resolution=30,
              crs="EPSG:32632", dilate=dilate)
    aoi = _aoi()
    with xsits.set_options(**served["opts"]):
        table = xsits.sample(aoi, collections=list(stac), window=window, steps=list(steps),
                             indices=list(indices), progress=False, **kw)
        cubes = {fid: ds.compute() for fid, ds in xsits.open_combined(
            aoi, list(stac), mode="patch", size=(window, window), **kw).items()}
    want = {fid: _point_series(ds, steps, indices) for fid, ds in cubes.items()}
    assert not table.attrs["missing"] and table.attrs["xsits"]["collections"] == list(stac)
    assert set(table.sensor) == {"Sentinel-2 MSI", "Landsat OLI"}
    for fid, got in table.groupby("feature_id"):
        ref = want[fid]
        np.testing.assert_array_equal(got.time.to_numpy(), ref.time.values)
        assert got.sensor.tolist() == ref.sensor.values.tolist()
        assert got.platform.tolist() == ref.platform.values.tolist()
        for name in ("red", "nir", *indices):
            np.testing.assert_allclose(got[name].to_numpy(), ref[name].values, rtol=1e-6,
                                       equal_nan=True)
        clear = np.isfinite(cubes[fid]["red"].values) | np.isfinite(cubes[fid]["nir"].values)
        np.testing.assert_array_equal(got.masked.to_numpy(), ~clear.any(axis=(1, 2)))
        assert got.masked.any() and (~got.masked).any()
        if not steps:
            assert got.red[got.masked].isna().all()


def test_cli_sample_of_several_collections(served, tmp_path):
    both = tmp_path / "both.json"  # one local catalog holding the items of both collections
    features = [f for k in ("s2", "landsat")
                for f in json.loads(Path(served["paths"][k]).read_text())["features"]]
    both.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    aoi = tmp_path / "aoi.geojson"
    _aoi().to_file(aoi)
    out = tmp_path / "t.parquet"
    args = ["sample", str(aoi), "--out", str(out), "--stac", str(both), "--collections",
            "sentinel-2-l2a,landsat-c2-l2", "--bands", "red,nir", "--start", S2.start, "--end",
            S2.end, "--resolution", "30", "--crs", "EPSG:32632", "--bandpass", "--indices",
            "NDVI", "--no-progress"]
    with xsits.set_options(**served["opts"]):
        result = CliRunner().invoke(cli_main, args)
        assert result.exit_code == 0, result.output
        want = xsits.sample(_aoi(), collections=["sentinel-2-l2a", "landsat-c2-l2"],
                            stac=str(both), bands=["red", "nir"], start=S2.start, end=S2.end,
                            resolution=30, crs="EPSG:32632", bandpass=True, indices="NDVI",
                            progress=False)
    got = pd.read_parquet(out)
    assert len(got) == len(want) > 0 and set(got.sensor) == {"Sentinel-2 MSI", "Landsat OLI"}
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True), check_dtype=False)
    bad = CliRunner().invoke(cli_main, [*args[:-1], "--mask", "--overwrite"])
    assert bad.exit_code != 0 and "drop --harmonize and --mask" in bad.output
    fetch = ["fetch", str(aoi), "--out", str(tmp_path / "nc"), "--stac", str(both),
             "--collections", "sentinel-2-l2a,landsat-c2-l2", "--bands", "red", "--start",
             S2.start, "--end", S2.end, "--resolution", "30", "--crs", "EPSG:32632", "--mode",
             "patch", "--size", "3x3", "--dilate", "1", "--no-progress"]
    with xsits.set_options(**served["opts"]):
        result = CliRunner().invoke(cli_main, fetch)
        assert result.exit_code == 0, result.output
        cube = xsits.open_combined(_aoi(), ["sentinel-2-l2a", "landsat-c2-l2"], stac=str(both),
                                   bands=["red"], start=S2.start, end=S2.end, resolution=30,
                                   crs="EPSG:32632", mode="patch", size=(3, 3),
                                   dilate=1)["p1"].compute()
    (path,) = (tmp_path / "nc").glob("*p1*.nc")
    with xr.open_dataset(path) as back:
        assert back.sensor.values.tolist() == cube.sensor.values.tolist()
        np.testing.assert_array_equal(back.red.values, cube.red.values)


def test_earth_search_landsat_from_a_requester_pays_bucket(tmp_path, monkeypatch):
    """Earth Search's landsat-c2-l2 items: ``s3://usgs-landsat/...`` hrefs, requester pays."""
    pytest.importorskip("moto.server", reason="the test extra (moto[server]) is not installed")
    from xsits.testing.servers import S3Server

    w = make_sensor_world(tmp_path / "es", WorldSpec(**SPEC, start="2024-06-02",
                                                     end="2024-06-10", revisit_days=8),
                          "es-landsat")
    item = w.item_dicts("s3://usgs-landsat/")[0]
    assert item["assets"]["red"]["storage:requester_pays"] is True
    assert item["assets"]["red"]["href"].startswith("s3://usgs-landsat/collection02/level-2/")
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_REGION", "us-east-1")):
        monkeypatch.setenv(key, value)
    with S3Server() as s3:
        _upload(s3, w.root)
        path = w.write_item_collection(tmp_path / "es.json", "s3://usgs-landsat/")
        with xsits.set_options(s3={"endpoint_url": s3.url, "requester_pays": True}):
            ds = xsits.open_cubes(_aoi(POINTS[:1]), stac=str(path), collection="landsat-c2-l2",
                                  bands=["red", "qa_pixel"], start="2024-06-02",
                                  end="2024-06-10", resolution=20, crs="EPSG:32632",
                                  mode="patch", size=(8, 8))["p0"].compute()
    for i, it in enumerate(sorted(w.items, key=lambda it: it["properties"]["datetime"])):
        np.testing.assert_array_equal(ds.red.values[i], _truth_at(w, it, "red", ds))
    out = to_reflectance(cloud_mask(ds))
    by_hand = _qa_masked(ds.qa_pixel.values) | (ds.red.values == 0)
    np.testing.assert_array_equal(np.isnan(out.red.values), by_hand)


def _upload(s3, root: Path) -> None:
    """The world's ``collection02/...`` files under the same keys of ``usgs-landsat``."""
    client = s3.client()
    client.create_bucket(Bucket="usgs-landsat")
    client.put_bucket_request_payment(Bucket="usgs-landsat",
                                      RequestPaymentConfiguration={"Payer": "Requester"})
    for path in sorted((root / "collection02").rglob("*.TIF")):
        client.upload_file(str(path), "usgs-landsat", path.relative_to(root).as_posix())


def test_combine_masks_a_cube_converted_before_and_refuses_shifted_grids():
    """Each sensor is masked by its own rule even when converted first; grids must match."""
    from xsits.ops.reflectance import to_reflectance
    from xsits.testing.cubes import make_cube

    raw = make_cube(bands=("B03", "B04", "B08", "SCL"))
    raw.attrs["collection"] = "sentinel-2-l2a"
    raw["SCL"][1, 0, 0] = 9  # a cloud
    for cube in (raw, to_reflectance(raw)):
        out = xsits.combine([cube])
        assert np.isnan(float(out.red[1, 0, 0]))
        assert np.isfinite(float(out.red[0, 0, 0]))
    shifted = raw.assign_coords(x=raw.x + 4.0)
    with pytest.raises(xsits.errors.BandError, match="different grids"):
        xsits.combine([raw, shifted])


def test_a_collection_that_fails_for_a_feature_leaves_no_partial_series(served, tmp_path):
    """HLS files whose headers cannot be read: the feature fails, not a Sentinel-2 series."""
    host = served["opts"]["pc_blob_hosts"][0]
    broken = served["hls-nasa"].write_item_collection(tmp_path / "broken.json",
                                                      f"http://{host}/nowhere/")
    stac = {"sentinel-2-l2a": served["paths"]["s2"], "HLSS30.v2.0": str(broken)}
    kw = dict(stac=stac, bands=["red", "nir"], start=S2.start, end=S2.end, resolution=30,
              mode="patch", size=(3, 3), crs="EPSG:32632")
    with xsits.set_options(**served["opts"]):
        cubes = xsits.open_combined(_aoi(), ["sentinel-2-l2a", "HLSS30.v2.0"], **kw)
        alone = xsits.open_combined(_aoi(), ["sentinel-2-l2a"], **kw)
    assert sorted(alone) == ["p0", "p1", "p2"]
    assert not list(cubes)  # no Sentinel-2-only cube passed off as the combined series
    assert sorted(cubes.missing) == ["p0", "p1", "p2"]
    for why in cubes.missing.values():
        assert not isinstance(why, xsits.stac.search.NoItems), why  # failed, not empty
        assert why.startswith("HLSS30.v2.0: ") and "nowhere/" in why, why


def test_landsat_dates_are_labelled_by_their_own_sensor():
    from xsits.testing.cubes import make_cube

    ls = make_cube(bands=("red", "nir08", "qa_pixel"))
    ls["qa_pixel"][:] = 21824  # clear
    ls.attrs["collection"] = "landsat-c2-l2"
    n = ls.sizes["time"]
    ls = ls.assign_coords(platform=("time", (["landsat-7", "landsat-9"] * n)[:n]))
    out = xsits.combine([ls])
    assert out.sensor.values.tolist() == (["Landsat ETM+", "Landsat OLI"] * n)[:n]
