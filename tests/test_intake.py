"""Intake driver ``sits``, shipped catalogs, results catalog: against the offline demo world."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import dask
import geopandas as gpd
import intake
import numpy as np
import pytest
import xarray as xr

import xsits
from xsits import demo
from xsits.cube.spec import OPTIONS, default
from xsits.errors import AOIError, CatalogError, ExportError, QueryError, XsitsError
from xsits.intake import SitsSource, postprocess
from xsits.intake.entries import (
    BUNDLED_AOI,
    CATALOG_DIR,
    ENTRY_OPTIONS,
    SitsEntry,
    entry_default,
    packaged_catalog,
)
from xsits.out.catalog import write_results_catalog
from xsits.stac import providers
from xsits.stac.collections import lookup, source_of

REPO = Path(__file__).resolve().parents[1]
CATALOGS = sorted((REPO / "catalogs").glob("*.yaml"))
POINTS = REPO / "notebooks" / "data" / "rand_pts.geojson"


# a hang (never seen in a normal run: ~20 s) fails in minutes, with thread stacks
pytestmark = pytest.mark.timeout(300)

@pytest.fixture(scope="module")
def demo_cat(demo_items):
    return intake.open_catalog(str(REPO / "catalogs" / "demo.yaml"))


def _search_for(src: SitsSource) -> xsits.SearchResult:
    """What xsits.search finds for the source's query (same footprints as open_cubes)."""
    from xsits.cube.grid import feature_geoboxes, footprints_4326

    aoi = xsits.read_aoi(POINTS, id_column="pt_id")
    kw = src.open_kwargs
    grid = xsits.GridSpec(crs=kw["crs"], resolution=kw["resolution"], mode=kw["mode"],
                          buffer=kw["buffer"], size=kw["size"])
    q = xsits.StacQuery(stac=kw["stac"], collection=kw["collection"], start=kw["start"],
                        end=kw["end"], bands=kw["bands"], max_cloud=kw["max_cloud"])
    return xsits.search(aoi, q, footprints=footprints_4326(feature_geoboxes(aoi, grid)))


# --------------------------------------------------------------------------- registration


def test_driver_registered_under_entry_point():
    assert intake.source.registry["sits"] is SitsSource
    # the driver's names only: the results catalog is xsits.out.catalog's (no re-export)
    assert xsits.intake.__all__ == ["SitsSource", "postprocess"]
    assert not hasattr(xsits.intake, "write_results_catalog")
    assert SitsSource.container == "xarray" and SitsSource.partition_access
    text = (REPO / "pyproject.toml").read_text()
    assert 'sits = "xsits.intake:SitsSource"' in text


@pytest.mark.parametrize("path", CATALOGS, ids=[p.name for p in CATALOGS])
def test_every_shipped_catalog_opens_with_typed_parameters(path, monkeypatch):
    def no_world():
        raise AssertionError("building a source must not generate the demo world")

    for name in providers.DEMO_NAMES:  # the demo registered its world under these names
        monkeypatch.setitem(providers.CATALOGS, name, no_world)
    cat = intake.open_catalog(str(path))
    assert len(list(cat)) >= 1
    for name in cat:
        entry = cat._entries[name]
        ups = {p.name: p for p in entry._user_parameters}
        assert {"aoi", "start", "end", "bands", "gapfill"} <= set(ups)
        known = lookup(entry._open_args.get("collection", default("collection")))
        assert ("max_cloud" in ups) is known.cloud_cover  # not for Sentinel-1 RTC
        assert ("mask" in ups) is (known.mask is not None)
        assert all(p.type and p.description for p in ups.values())
        assert ups["mode"].allowed == ["image", "patch"]
        src = cat[name]  # default arguments: builds the source, reads and searches nothing
        assert isinstance(src, SitsSource)
        assert src._search is None and src._aoi is None
        assert Path(src._aoi_arg).resolve() == POINTS.resolve()


def test_sentinel2_catalog_entries_and_presets():
    cat = intake.open_catalog(str(REPO / "catalogs" / "sentinel2.yaml"))
    assert set(cat) == {"s2_points", "s2_planetary_computer", "s2_earth_search"}
    src = cat.s2_points(aoi=str(POINTS), start="2024-01-01", end="2025-02-01", max_cloud=10)
    assert src.open_kwargs["stac"] == "planetary-computer"
    assert src.open_kwargs["max_cloud"] == 10.0 and src.open_kwargs["end"] == "2025-02-01"
    assert cat.s2_points(stac="earth-search").open_kwargs["stac"] == "earth-search"
    assert cat.s2_earth_search.open_kwargs["stac"] == "earth-search"
    assert cat.s2_planetary_computer.open_kwargs["stac"] == "planetary-computer"
    src = cat.s2_points(bands=["B04", "SCL"], mode="patch", size=20, mask=True, gapfill="linear")
    kw = src.open_kwargs
    assert kw["bands"] == ("B04", "SCL") and kw["mode"] == "patch" and kw["size"] == (20, 20)
    assert [xsits.ops.steps.describe(s) for s in src.steps] == ["cloud_mask()",
                                                            "gapfill(method='linear')"]


def _yaml_entries(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())["sources"]


def test_top_level_catalogs_and_points_are_the_packaged_files():
    packaged = sorted(CATALOG_DIR.glob("*.yaml"))
    assert [p.name for p in packaged] == ["demo.yaml", "hls.yaml", "landsat.yaml",
                                          "sentinel1.yaml", "sentinel2.yaml"]
    # the repository's catalogs/ and the notebooks' points are links, not copies
    assert [p.name for p in CATALOGS] == [p.name for p in packaged]
    for top, pkg in zip(CATALOGS, packaged, strict=True):
        assert top.is_symlink() and top.resolve() == pkg.resolve()
    assert POINTS.is_symlink() and POINTS.resolve() == BUNDLED_AOI.resolve()
    assert len(gpd.read_file(BUNDLED_AOI)) == 24


def test_entry_point_opens_every_packaged_entry():
    """What ``intake.cat.xsits`` loads: the pyproject's ``intake.catalogs`` entry point."""
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    value = meta["entry-points"]["intake.catalogs"]["xsits"]
    cat = importlib.metadata.EntryPoint("xsits", value, "intake.catalogs").load()
    assert cat is packaged_catalog()
    names = [n for p in sorted(CATALOG_DIR.glob("*.yaml")) for n in _yaml_entries(p)]
    assert sorted(cat) == sorted(names) and len(set(names)) == len(names)
    assert isinstance(cat._entries["demo"], SitsEntry)
    assert cat.s2_earth_search(max_cloud=5).open_kwargs["stac"] == "earth-search"
    # the wheel carries them (tests/install_check.py installs one and opens them)
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["xsits"]
    assert {"catalogs/*.yaml", "catalogs/data/*.geojson"} <= set(globs)


@pytest.mark.parametrize("path", CATALOGS, ids=[p.name for p in CATALOGS])
def test_entries_hold_only_what_differs_from_the_spec(path):
    """Descriptions, types and defaults come from the spec; a YAML entry restates none."""
    cat = intake.open_catalog(str(path))
    for key, raw in _yaml_entries(path).items():
        assert raw["cls"] == "xsits.intake.entries.SitsEntry"
        kwargs = raw["kwargs"]
        assert kwargs["name"] == key
        overrides = kwargs.get("parameters", {})
        ups = {p.name: p for p in cat._entries[key]._user_parameters}
        fixed = set(kwargs.get("args", {}))
        known = lookup(kwargs["args"]["collection"])  # every packaged entry fixes one
        fixed |= set() if known.cloud_cover else {"max_cloud"}  # Sentinel-1: no such filter
        fixed |= set() if known.mask else {"mask"}  # ... and no cloud mask
        offered = [o for o in (*OPTIONS, *ENTRY_OPTIONS) if o.name not in fixed]
        assert list(ups) == [o.name for o in offered]
        for opt in offered:
            p, given = ups[opt.name], overrides.get(opt.name, {})
            assert p.description == given.get("description", opt.help)
            if "default" in given:
                assert given["default"] != entry_default(opt.name), (key, opt.name)
                assert p.default == given["default"]
            elif opt.name in {o.name for o in OPTIONS}:
                assert p.default == _spec_default(opt.name)
            if opt.choices:
                assert p.allowed == list(opt.choices)


def _spec_default(name):
    value = default(name)
    if name == "size":
        return value[0]
    return list(value) if isinstance(value, tuple) else value


#: The packaged entries of the presets beyond Sentinel-2: (stac, collection, resolution).
PRESET_ENTRIES = {
    "landsat_planetary_computer": ("planetary-computer", "landsat-c2-l2", 30.0),
    "landsat_earth_search": ("earth-search", "landsat-c2-l2", 30.0),
    "hls_s30_planetary_computer": ("planetary-computer", "hls2-s30", 30.0),
    "hls_l30_planetary_computer": ("planetary-computer", "hls2-l30", 30.0),
    "hls_s30_nasa": ("nasa-lpcloud", "HLSS30_2.0", 30.0),
    "hls_l30_nasa": ("nasa-lpcloud", "HLSL30_2.0", 30.0),
    "s1_planetary_computer": ("planetary-computer", "sentinel-1-rtc", 10.0),
}


@pytest.mark.parametrize("name", sorted(PRESET_ENTRIES))
def test_preset_entries_open_their_registry_source_with_its_defaults(name):
    stac, collection, resolution = PRESET_ENTRIES[name]
    cat = packaged_catalog()
    assert name in list(cat)  # YAMLFilesCatalog reads its files when listed
    entry = cat._entries[name]
    known = lookup(collection)
    source = source_of(known, stac, collection)
    assert source is not None  # a provider the registry knows serves it under that id
    kw = cat[name].open_kwargs  # every default: the spec's, the registry's bands
    assert (kw["stac"], kw["collection"], kw["resolution"]) == (stac, collection, resolution)
    assert kw["bands"] == known.default_bands and kw["max_cloud"] is None
    assert (kw["start"], kw["end"], kw["mode"], kw["crs"]) == (
        default("start"), default("end"), default("mode"), default("crs"))
    ups = {p.name: p for p in entry._user_parameters}
    assert ups["bands"].type == "mlist"
    assert set(ups["bands"].allowed) == {n for b in known.bands for n in b.names}
    # what the user must know to read the files is said where the entry is chosen
    words = {"pc-sas": "xsits[pc]", "earthdata": "$EARTHDATA_TOKEN", None: "Earth Search"}
    assert words[source.auth] in entry.describe()["description"]
    assert ("requester-pays" in entry.describe()["description"]) is source.requester_pays
    with pytest.raises(CatalogError, match=r"bands=\['SCL'\]"):  # no band of this collection
        getattr(cat, name)(bands=["SCL"])
    with pytest.raises(CatalogError, match="collection is fixed"):
        getattr(cat, name)(collection="sentinel-2-l2a")
    mine = getattr(cat, name)(bands=[known.default_bands[-1]], start="2024-05-01",
                              end="2024-05-31", resolution=60, mode="patch", size=4)
    kw = mine.open_kwargs
    assert (kw["bands"], kw["start"], kw["end"], kw["resolution"], kw["size"]) == (
        (known.default_bands[-1],), "2024-05-01", "2024-05-31", 60.0, (4, 4))
    if known.cloud_cover:
        assert getattr(cat, name)(max_cloud=20).open_kwargs["max_cloud"] == 20.0
        src = getattr(cat, name)(mask=True, gapfill="linear")
        assert [xsits.ops.steps.describe(s) for s in src.steps] == [
            "cloud_mask()", "gapfill(method='linear')"]
        return
    # Sentinel-1: no cloud cover to filter on, no cloud mask; asked anyway, a typed error
    assert {"max_cloud", "mask"}.isdisjoint(ups)
    with pytest.raises(QueryError, match="max_cloud=20: sentinel-1-rtc items have no "
                                         "eo:cloud_cover"):
        getattr(cat, name)(max_cloud=20)
    with pytest.raises(CatalogError, match=r"mask=True, but collection 'sentinel-1-rtc' "
                                           r"\(Sentinel-1 C-SAR\) has no cloud mask"):
        getattr(cat, name)(mask=True)


def test_discover_dtypes_are_the_registry_bands():
    """Without reading: Landsat uint16, HLS int16 with a uint8 Fmask, S1 float32."""
    cat = packaged_catalog()
    assert cat.landsat_planetary_computer._dtypes() == {
        "green": "uint16", "red": "uint16", "nir08": "uint16", "qa_pixel": "uint16"}
    assert cat.hls_s30_nasa(mask=True)._dtypes() == {
        "B03": "float32", "B04": "float32", "B8A": "float32", "Fmask": "uint8"}
    assert cat.hls_l30_planetary_computer._dtypes()["B05"] == "int16"
    assert cat.s1_planetary_computer(gapfill="linear")._dtypes() == {"vv": "float32",
                                                                     "vh": "float32"}
    assert cat.s2_earth_search(bands=["red", "scl"], mask=True)._dtypes() == {
        "red": "float32", "scl": "uint8"}


def test_demo_entry_defaults_are_the_demo_world():
    src = packaged_catalog().demo()
    kw = src.open_kwargs
    assert (kw["start"], kw["end"], kw["max_cloud"]) == (demo.DEMO_START, demo.DEMO_END,
                                                         demo.DEMO_MAX_CLOUD)
    assert kw["bands"] == demo.DEMO_BANDS
    assert {k: kw[k] for k in demo.DEMO_GRID} == demo.DEMO_GRID
    assert src._post["harmonize"] is True


def test_step_defaults_are_the_step_options():
    """harmonize / mask / gapfill: one default each, the same for every facade."""
    import dataclasses
    import inspect

    from xsits.ops.steps import StepOptions, build_steps

    defaults = {f.name: f.default for f in dataclasses.fields(StepOptions)}
    assert defaults == {"harmonize": False, "mask": False, "gapfill": None}
    for facade in (build_steps, postprocess, SitsSource):
        params = inspect.signature(facade).parameters
        assert {k: params[k].default for k in defaults} == defaults, facade
    cat = packaged_catalog()
    assert "s2_points" in list(cat)  # YAMLFilesCatalog reads its files when listed
    ups = {p.name: p.default for p in cat._entries["s2_points"]._user_parameters}
    assert (ups["harmonize"], ups["mask"], ups["gapfill"]) == (False, False, "none")
    src = cat.s2_points()
    assert src._post == defaults and src.steps == []


def test_optional_spec_fields_keep_the_sources_default():
    """Intake would turn an absent float into 0.0: ``max_cloud`` stays None (no filter)."""
    cat = packaged_catalog()
    assert "s2_points" in list(cat)  # YAMLFilesCatalog reads its files when listed
    ups = {p.name: p for p in cat._entries["s2_points"]._user_parameters}
    assert ups["max_cloud"].default is None and ups["query"].default is None
    src = packaged_catalog().s2_points()
    assert src.open_kwargs["max_cloud"] is None and src.open_kwargs["filter"] is None
    src = packaged_catalog().s2_points(filter="eo:cloud_cover < 3", max_cloud=0)
    assert src.open_kwargs["filter"] == "eo:cloud_cover < 3"
    assert src.open_kwargs["max_cloud"] == 0.0


def test_fixed_args_and_bad_overrides_are_catalog_errors():
    cat = packaged_catalog()
    with pytest.raises(CatalogError, match="stac is fixed to 'earth-search'"):
        cat.s2_earth_search(stac="planetary-computer")
    with pytest.raises(CatalogError, match=r"parameters \['stac'\] cannot be set here"):
        SitsEntry("x", args={"stac": "demo"}, parameters={"stac": {"default": "demo"}})
    with pytest.raises(CatalogError, match=r"unknown keys \['dflt'\]"):
        SitsEntry("x", parameters={"start": {"dflt": "2024-01-01"}})
    with pytest.raises(CatalogError, match=r"unknown args \['stack'\]"):
        SitsEntry("x", args={"stack": "demo"})


def test_entry_bands_are_the_registry_names_of_its_collection():
    entry = SitsEntry("landsat", args={"stac": "planetary-computer",
                                       "collection": "landsat-c2-l2"},
                      parameters={"bands": {"default": ["red", "nir08"]}})
    ups = {p.name: p for p in entry._user_parameters}
    assert ups["bands"].type == "mlist" and {"red", "nir08", "qa_pixel"} <= set(
        ups["bands"].allowed)
    assert entry().open_kwargs["bands"] == ("red", "nir08")
    assert entry(bands=["swir16"]).open_kwargs["bands"] == ("swir16",)
    with pytest.raises(CatalogError, match=r"bands=\['B04'\]"):  # a Sentinel-2 name
        entry(bands=["B04"])


def test_entry_bands_take_comma_separated_text():
    cat = packaged_catalog()
    assert cat.s2_points(bands="B04,B08").open_kwargs["bands"] == ("B04", "B08")
    assert cat.s2_points(bands="B04, SCL").open_kwargs["bands"] == ("B04", "SCL")
    assert cat.landsat_earth_search(bands="red,qa_pixel").open_kwargs["bands"] == (
        "red", "qa_pixel")


def test_entry_with_an_open_collection_takes_the_chosen_collections_bands():
    entry = SitsEntry("x", args={"stac": "planetary-computer"})
    ups = {p.name: p for p in entry._user_parameters}
    assert ups["bands"].type == "list" and ups["bands"].allowed is None
    src = entry(collection="landsat-c2-l2", bands=["qa_pixel"])
    assert src.open_kwargs["collection"] == "landsat-c2-l2"
    assert src.open_kwargs["bands"] == ("qa_pixel",)
    assert entry(bands="B04,SCL").open_kwargs["bands"] == ("B04", "SCL")
    # the query checks the names: a typed error naming the value and the fix
    with pytest.raises(QueryError, match=r"bands=\['B99'\]: band 'B99' is not a Sentinel-2 "
                                         r"L2A band; use B01"):
        entry(bands=["B99"])


@pytest.mark.parametrize(("size", "expected"), [
    (12, (12, 12)), ([12, 8], (12, 8)), ((12, 8), (12, 8)), ("12x8", (12, 8)),
    ("12 X 8", (12, 8)), ("12", (12, 12))])
def test_entry_size_takes_an_int_a_pair_or_wxh_text(size, expected):
    src = packaged_catalog().s2_points(mode="patch", size=size)
    assert src.open_kwargs["size"] == expected


@pytest.mark.parametrize("size", ["12x", "0x8", "big", [12], [12, 8, 3], 2.5, True])
def test_entry_size_refuses_what_is_no_size(size):
    with pytest.raises(CatalogError, match=r"size=.*is not a patch size: an int, \[w, h\] "
                                           r"or 'WxH' text"):
        packaged_catalog().s2_points(mode="patch", size=size)


def test_entry_of_an_unknown_collection_takes_any_band_list():
    entry = SitsEntry("mine", args={"stac": "demo", "collection": "my-collection"},
                      parameters={"bands": {"default": ["a", "b"]}})
    ups = {p.name: p for p in entry._user_parameters}
    assert ups["bands"].type == "list" and ups["bands"].allowed is None
    assert entry().open_kwargs["bands"] == ("a", "b")
    assert entry(bands="c,d").open_kwargs["bands"] == ("c", "d")


def test_intake_itself_is_not_patched():
    from intake.catalog.local import LocalCatalogEntry

    assert LocalCatalogEntry._create_open_args.__module__ == "intake.catalog.local"
    assert SitsEntry._create_open_args.__module__ == "xsits.intake.entries"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"maxcloud": 10}, CatalogError, "unknown parameter"),
        ({"max_cloud": "lots"}, CatalogError, "max_cloud='lots'"),
        ({"max_cloud": 120}, CatalogError, "max_cloud=120"),
        ({"size": "big"}, CatalogError, "size='big'"),
        ({"bands": "B04,B99"}, CatalogError, "bands='B04,B99'"),
        ({"bands": ["B99"]}, CatalogError, "bands=['B99']"),
        ({"mode": "tile"}, CatalogError, "mode='tile'"),
        ({"stac": "my-stac"}, CatalogError, "stac='my-stac'"),
        ({"gapfill": "cubic-ish"}, CatalogError, "gapfill='cubic-ish'"),
        ({"aoi": "no/such/file.geojson"}, AOIError, "does not exist"),
        ({"start": "last tuesday"}, QueryError, "is not a date"),
        ({"start": "2024-05-01", "end": "2024-01-01"}, QueryError, "before"),
    ],
)
def test_bad_catalog_input_gives_typed_one_line_errors(kwargs, error, words):
    cat = intake.open_catalog(str(REPO / "catalogs" / "sentinel2.yaml"))
    with pytest.raises(error) as info:
        cat.s2_points(**kwargs)
    assert words in str(info.value) and "\n" not in str(info.value)


SIGNED = "https://u:pw@example.com/stac?sig=SECRET"


@pytest.mark.parametrize("call", ["allowed", "type", "fixed"])
def test_catalog_errors_show_no_secret(call):
    """A signed URL in a catalog error: the message names it without its secret."""
    cat = intake.open_catalog(str(REPO / "catalogs" / "sentinel2.yaml"))
    with pytest.raises(CatalogError) as info:
        if call == "allowed":  # a value outside the entry's allowed stac values
            cat.s2_points(stac=SIGNED)
        elif call == "type":  # not a number; Intake's own error text quotes the value too
            cat.s2_points(resolution=SIGNED)
        else:  # the entry fixes a signed URL
            SitsEntry("mine", args={"stac": SIGNED})(stac="earth-search")
    text = str(info.value)
    assert "SECRET" not in text and "sig=" not in text and "u:pw" not in text
    assert "https://***@example.com/stac?<redacted>" in text  # the value is still named


def test_geodataframe_aoi_through_catalog_points_to_the_driver():
    cat = intake.open_catalog(str(REPO / "catalogs" / "sentinel2.yaml"))
    with pytest.raises(CatalogError, match="open_sits"):
        cat.s2_points(aoi=gpd.read_file(POINTS))


def test_direct_driver_errors():
    with pytest.raises(CatalogError, match="unknown parameter"):
        intake.open_sits(aoi=str(POINTS), colection="x")
    with pytest.raises(CatalogError, match="aoi is required"):
        SitsSource()
    with pytest.raises(QueryError, match="not a preset"):  # checked before any work
        intake.open_sits(aoi=str(POINTS), stac="no-such-preset")
    with pytest.raises(xsits.errors.GridError):
        intake.open_sits(aoi=str(POINTS), mode="tile")


# --------------------------------------------------------------------------- demo entry


def _without_pixels(stac: str, tmp_path: Path) -> Path:
    """A copy of an ItemCollection whose assets point to files that do not exist."""
    import json

    doc = json.loads(Path(stac).read_text())
    for item in doc["features"]:
        for asset in item["assets"].values():
            asset["href"] = str(tmp_path / "gone" / Path(asset["href"]).name)
    out = tmp_path / "items.geojson"
    out.write_text(json.dumps(doc))
    return out


def test_discover_searches_only_and_matches_xsits_search(demo_cat, tmp_path):
    src = demo_cat.demo()
    info = src.discover()
    # the same items without their files: discover() reads no pixel, so it says the same
    blind = intake.open_sits(aoi=str(POINTS), id_column="pt_id", harmonize=True, **{
        **src.open_kwargs, "stac": str(_without_pixels(src.open_kwargs["stac"], tmp_path))})
    blind_info = blind.discover()
    assert {k: v for k, v in blind_info["metadata"].items() if k not in ("stac", "catalog_dir")
            } == {k: v for k, v in info["metadata"].items() if k not in ("stac", "catalog_dir")}
    assert blind_info["npartitions"] == 6 and not (tmp_path / "gone").exists()
    meta = info["metadata"]
    res = _search_for(src)
    with_items = [f for f in xsits.read_aoi(POINTS, id_column="pt_id")["feature_id"]
                  if res.items.get(f)]
    assert info["npartitions"] == len(with_items) == 6
    assert meta["feature_ids"] == with_items == ["1", "3", "4", "5", "7", "10"]
    assert meta["n_features"] == 24 and set(meta["missing"]) == set(res.missing)
    assert len(meta["missing"]) == 18
    assert info["dtype"] == {"B02": "uint16", "B03": "uint16", "B04": "uint16",
                             "B08": "uint16", "SCL": "uint8"}
    assert meta["bands"] == ["B02", "B03", "B04", "B08", "SCL"]
    cubes = xsits.open_cubes(POINTS, id_column="pt_id", **src.open_kwargs)
    for fid in with_items:
        ds = cubes[fid]
        assert meta["n_dates"][fid] == ds.sizes["time"] == len(meta["dates"][fid])
        assert meta["dates"][fid] == [str(t)[:10] for t in ds.time.values]
        assert meta["shape"][fid] == [ds.sizes["time"], 128, 128]
        assert meta["crs"][fid] == ds.attrs["crs"]
        # dates before grouping by solar day: at most one item per date here
        assert len(res.items[fid]) >= meta["n_dates"][fid]


def test_read_partition_equals_open_cubes(demo_cat):
    src = demo_cat.demo(max_cloud=20, start="2024-05-01", end="2024-07-31")
    src.discover()
    ref = xsits.open_cubes(POINTS, id_column="pt_id", **src.open_kwargs)
    assert list(ref) == src.feature_ids
    ds = src.read_partition(1)
    fid = src.feature_ids[1]
    assert ds.attrs["feature_id"] == fid
    assert all(isinstance(v.data, dask.array.Array) for v in ds.data_vars.values())
    expected = xsits.ops.harmonize.harmonize(ref[fid])  # the demo entry harmonizes by default
    xr.testing.assert_identical(ds.compute(), expected.compute())
    by_id = src.read_partition(fid)
    xr.testing.assert_identical(by_id.compute(), expected.compute())
    with pytest.raises(CatalogError, match="no partition"):
        src.read_partition("2")
    with pytest.raises(IndexError):
        src.read_partition(99)


def test_postprocessing_mask_and_gapfill(demo_cat):
    src = demo_cat.demo(mask=True, gapfill="linear", start="2024-06-01", end="2024-07-31")
    ds = src.read_partition("7").compute()
    raw = xsits.open_cubes(POINTS, id_column="pt_id", **src.open_kwargs)["7"]
    expected = postprocess(raw, harmonize=True, mask=True, gapfill="linear").compute()
    xr.testing.assert_identical(ds, expected)
    assert ds.B04.dtype == np.float32 and ds.SCL.dtype == np.uint8
    masked = xsits.ops.mask.scl_mask(xsits.ops.harmonize.harmonize(raw)).compute()
    assert bool(masked.B04.isnull().any())  # there were clouds...
    has_valid = masked.B04.notnull().any("time")
    assert not bool(ds.B04.isnull().where(has_valid, False).any())  # ...all filled


def test_to_dask_is_lazy_cubes_in_partition_order_and_read_computes(demo_cat):
    src = demo_cat.demo(start="2024-08-01", end="2024-08-31", mode="patch", size=16)
    cubes = src.to_dask()
    assert isinstance(cubes, xsits.Cubes)
    assert list(cubes) == src.feature_ids and len(cubes.missing) == 18
    assert all(isinstance(ds.B04.data, dask.array.Array) for ds in cubes.values())
    assert cubes.search is src._search  # one search for discover + data
    got = src.read()
    assert list(got) == list(cubes) and got.missing == cubes.missing
    for fid, ds in got.items():
        assert isinstance(ds.B04.data, np.ndarray)
        xr.testing.assert_identical(ds, cubes[fid].compute())


def test_geodataframe_aoi_with_direct_driver(demo_items):
    gdf = xsits.read_aoi(POINTS, id_column="pt_id").iloc[[2, 3]]  # features 3 and 4
    src = intake.open_sits(aoi=gdf, stac="demo", start="2024-04-01", end="2024-04-30",
                           bands=["B04", "SCL"], mode="patch", size=8)
    assert src.discover()["metadata"]["feature_ids"] == ["3", "4"]
    assert src.read_partition("4").sizes == {"time": 6, "y": 8, "x": 8}


def test_source_feeds_the_batch_engine(demo_items, tmp_path):
    gdf = xsits.read_aoi(POINTS, id_column="pt_id").iloc[[0, 1]]  # 1 has items, 2 has none
    src = intake.open_sits(aoi=gdf, stac="demo", start="2024-04-01", end="2024-05-15",
                           bands=["B04", "SCL"], mode="patch", size=8, mask=True)
    report = xsits.batch.compute_all(src, steps=src.steps, out_dir=tmp_path, progress=False)
    assert report.set_index("feature_id").status.to_dict() == {"1": "written", "2": "empty"}


# --------------------------------------------------------------------------- results catalog


def test_results_catalog_reopens_netcdf_and_zarr(tmp_path):
    from xsits.testing.cubes import make_cube

    a = make_cube(feature_id="a", n_times=3, shape=(4, 4))
    b = make_cube(feature_id="b.2", n_times=2, shape=(4, 4))
    pa = xsits.out.export.export(a, tmp_path / "a.nc")
    pb = xsits.out.export.export(b, tmp_path / "sub" / "b.zarr")
    path = write_results_catalog({"a": pa, "b.2": pb}, tmp_path)
    assert path == tmp_path / "catalog.yaml"
    assert "{{ CATALOG_DIR }}/sub/b.zarr" in path.read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    cat = intake.open_catalog(str(path))
    assert list(cat) == ["a", "b.2"]
    got_a = cat["a"].to_dask()
    assert isinstance(got_a.B04.data, dask.array.Array)
    np.testing.assert_array_equal(got_a.B04.values, a.B04.values)
    np.testing.assert_array_equal(cat["b.2"].read().B04.values, b.B04.values)
    # the folder can move: paths are relative to the catalog
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    tmp_path.rename(moved)
    np.testing.assert_array_equal(
        intake.open_catalog(str(moved / "catalog.yaml"))["a"].read().B04.values, a.B04.values
    )


def test_results_catalog_rejects_unknown_suffix_and_keeps_old_file(tmp_path):
    ok = write_results_catalog({}, tmp_path)
    before = ok.read_text()
    with pytest.raises(ExportError, match="tif"):
        write_results_catalog({"x": tmp_path / "x.tif"}, tmp_path)
    assert ok.read_text() == before
    assert issubclass(ExportError, XsitsError)
