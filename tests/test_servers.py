"""The local STAC world is real: API search semantics, Range COG serving, counting, faults."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from xsits.testing.pgstac import postgres_available
from xsits.testing.servers import CogServer, FaultProxy

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str, headers: dict | None = None) -> tuple[int, bytes, Any]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with OPENER.open(req, timeout=30) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def _post_json(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with OPENER.open(req, timeout=30) as resp:
        return json.loads(resp.read())


def _search_all(url: str, body: dict) -> list[dict]:
    """POST /search and follow ``next`` links (POST bodies per the STAC paging spec)."""
    out: list[dict] = []
    page = _post_json(url + "/search", body)
    for _ in range(1000):
        out += page["features"]
        nxt = [ln for ln in page.get("links", []) if ln.get("rel") == "next"]
        if not nxt:
            return out
        ln = nxt[0]
        if ln.get("method", "GET").upper() == "POST":
            page = _post_json(ln["href"], {**body, **ln.get("body", {})})
        else:
            page = json.loads(_get(ln["href"])[1])
    raise AssertionError("paging did not end")


def _first_asset(item: dict) -> tuple[str, dict]:
    for key, asset in item["assets"].items():
        if asset["href"].endswith((".tif", ".tiff")):
            return key, asset
    raise AssertionError(f"no GeoTIFF asset in {item['id']}")


def _local_path(world: Any, href: str, base: str) -> Path:
    assert href.startswith(base)
    return Path(world.root) / href[len(base):]


# --------------------------------------------------------------------------- helpers


def test_postgres_available_returns_reason():
    ok, reason = postgres_available()
    assert isinstance(ok, bool)
    assert ok or reason


# --------------------------------------------------------------------------- STAC API


def test_api_lists_collection(stac_url, world):
    status, body, _ = _get(stac_url + "/collections")
    assert status == 200
    ids = [c["id"] for c in json.loads(body)["collections"]]
    assert world.collection["id"] in ids
    status, body, _ = _get(stac_url + "/")
    conforms = json.loads(body)["conformsTo"]
    assert any("item-search#filter" in c for c in conforms)
    assert any("item-search#sort" in c for c in conforms)
    assert any("item-search#query" in c for c in conforms)


def test_search_query_cloud_cover(stac_url, world, world_items):
    cid = world.collection["id"]
    got = _search_all(
        stac_url,
        {"collections": [cid], "query": {"eo:cloud_cover": {"lt": 10}}, "limit": 100},
    )
    expected = {it["id"] for it in world_items if it["properties"]["eo:cloud_cover"] < 10}
    assert expected, "the world should have some clear items"
    assert expected != {it["id"] for it in world_items}, "and some cloudy ones"
    assert {f["id"] for f in got} == expected
    assert len(got) == len(expected)


def test_search_cql2_filter_and_sortby(stac_url, world, world_items):
    cid = world.collection["id"]
    body = {
        "collections": [cid],
        "filter-lang": "cql2-json",
        "filter": {"op": ">=", "args": [{"property": "eo:cloud_cover"}, 20]},
        "sortby": [{"field": "properties.eo:cloud_cover", "direction": "asc"}],
        "limit": 100,
    }
    got = _search_all(stac_url, body)
    expected = {it["id"] for it in world_items if it["properties"]["eo:cloud_cover"] >= 20}
    assert {f["id"] for f in got} == expected
    ccs = [f["properties"]["eo:cloud_cover"] for f in got]
    assert ccs == sorted(ccs)


def test_paging_limit_2_returns_all(stac_url, world, world_items):
    got = _search_all(stac_url, {"collections": [world.collection["id"]], "limit": 2})
    ids = [f["id"] for f in got]
    assert len(ids) == len(set(ids)) == len(world_items)
    assert set(ids) == {it["id"] for it in world_items}


def test_items_hrefs_point_at_cog_server(stac_url, world, cog_server):
    page = _post_json(stac_url + "/search", {"collections": [world.collection["id"]], "limit": 1})
    _, asset = _first_asset(page["features"][0])
    assert asset["href"].startswith(cog_server.url)
    status, _, _ = _get(asset["href"], {"Range": "bytes=0-15"})
    assert status == 206


def test_api_request_counting(pg_stac, world):
    pg_stac.reset_stats()
    assert pg_stac.stats() == {}
    for _ in range(3):
        _post_json(pg_stac.url + "/search", {"collections": [world.collection["id"]], "limit": 1})
    _get(pg_stac.url + "/collections")
    stats = pg_stac.stats()
    assert stats == {"/search": 3, "/collections": 1}  # /__stats itself is not counted


def test_load_upserts(pg_stac, world, world_items):
    item = dict(world_items[0])
    item["properties"] = {**item["properties"], "xsits:test": "upserted"}
    pg_stac.load(world.collection, [item])
    page = _post_json(pg_stac.url + "/search", {"ids": [item["id"]]})
    assert page["features"][0]["properties"]["xsits:test"] == "upserted"
    pg_stac.load(world.collection, [world_items[0]])  # restore
    page = _post_json(pg_stac.url + "/search", {"ids": [item["id"]]})
    assert "xsits:test" not in page["features"][0]["properties"]


def test_api_hydrate_serves_the_same_items(pg_stac, world, world_items):
    """The benchmark's ``api_hydrate=True`` (hydration in Python) answers as the default."""
    from xsits.stac.search import ITEM_FIELDS
    from xsits.testing.pgstac import PgstacServer

    bodies = [
        {"collections": [world.collection["id"]], "limit": 1000},
        {"collections": [world.collection["id"]], "limit": 1000,
         "query": {"eo:cloud_cover": {"lt": 10}},
         "fields": {"include": [*ITEM_FIELDS, "assets.B04", "assets.SCL"],
                    "exclude": ["links"]}},
    ]

    def answers(url: str) -> list[list[dict]]:
        pages = [_post_json(url + "/search", body)["features"] for body in bodies]
        return [[{k: v for k, v in f.items() if k != "links"} for f in page] for page in pages]

    with PgstacServer(api_hydrate=True) as api:
        api.load(world.collection, world_items)
        got = answers(api.url)
    want = answers(pg_stac.url)
    assert len(got[0]) == len(world_items)
    assert 0 < len(got[1]) < len(world_items)  # the cloud filter keeps some, not all
    assert got == want
    assert set(got[1][0]["assets"]) == {"B04", "SCL"}
    assert "href" in got[1][0]["assets"]["B04"] and "proj:shape" in got[0][0]["assets"]["B04"]


# --------------------------------------------------------------------------- COG server


def test_cog_range_request_exact_bytes(cog_server, world, world_items):
    _, asset = _first_asset(world_items[0])
    path = _local_path(world, asset["href"], cog_server.url)
    data = path.read_bytes()
    cog_server.reset_stats()
    status, body, headers = _get(asset["href"], {"Range": "bytes=100-1123"})
    assert status == 206
    assert body == data[100:1124]
    assert headers["Content-Range"] == f"bytes 100-1123/{len(data)}"
    status, body, _ = _get(asset["href"], {"Range": "bytes=0-0"})
    assert status == 206 and body == data[:1]
    status, body, _ = _get(asset["href"])
    assert status == 200 and body == data
    stats = cog_server.stats()
    assert stats["requests"] == 3 and stats["get"] == 3
    assert stats["range_requests"] == 2
    assert stats["bytes_served"] == 1024 + 1 + len(data)
    assert _get(cog_server.url + "no/such.tif")[0] == 404


def test_rasterio_reads_cog_over_http(cog_server, world, world_items):
    import rasterio

    _, asset = _first_asset(world_items[-1])
    path = _local_path(world, asset["href"], cog_server.url)
    cog_server.reset_stats()
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", CPL_VSIL_CURL_CACHE_SIZE=0):
        with rasterio.open(asset["href"]) as remote, rasterio.open(path) as local:
            assert remote.crs == local.crs and remote.transform == local.transform
            win = ((0, min(64, local.height)), (0, min(64, local.width)))
            np.testing.assert_array_equal(remote.read(1, window=win), local.read(1, window=win))
            np.testing.assert_array_equal(remote.read(1), local.read(1))
    stats = cog_server.stats()
    assert stats["range_requests"] >= 1
    assert stats["faults"] == 0


def test_cog_server_faults_drop_and_truncate(world, world_items):
    _, asset = _first_asset(world_items[0])
    rel = asset["href"].split("://", 1)[1].split("/", 1)[1]
    size = (Path(world.root) / rel).stat().st_size
    outcomes: Counter[str] = Counter()
    with CogServer(world.root, fault_rate=0.5, seed=3) as faulty:
        for _ in range(30):
            host, port = "127.0.0.1", int(faulty.url.rsplit(":", 1)[1].strip("/"))
            with socket.create_connection((host, port), timeout=10) as s:
                s.sendall(f"GET /{rel} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                raw = b""
                while chunk := s.recv(65536):
                    raw += chunk
            if not raw:
                outcomes["dropped"] += 1
                continue
            head, _, body = raw.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            outcomes["full" if len(body) == size else "truncated"] += 1
        stats = faulty.stats()
    assert outcomes["dropped"] == stats["dropped"] > 0
    assert outcomes["truncated"] == stats["truncated"] > 0
    assert outcomes["full"] > 0
    assert stats["requests"] == 30
    assert stats["faults"] == outcomes["dropped"] + outcomes["truncated"]


def test_cog_server_many_concurrent_range_requests(cog_server, world, world_items):
    from concurrent.futures import ThreadPoolExecutor

    _, asset = _first_asset(world_items[0])
    data = _local_path(world, asset["href"], cog_server.url).read_bytes()
    ranges = [(i * 97 % max(1, len(data) - 600), i * 97 % max(1, len(data) - 600) + 511)
              for i in range(128)]

    def fetch(r: tuple[int, int]) -> bool:
        status, body, _ = _get(asset["href"], {"Range": f"bytes={r[0]}-{r[1]}"})
        return status == 206 and body == data[r[0]:r[1] + 1]

    with ThreadPoolExecutor(64) as pool:
        assert all(pool.map(fetch, ranges))


def test_cog_server_latency(world, world_items):
    import time

    _, asset = _first_asset(world_items[0])
    rel = asset["href"].split("/", 3)[3]
    with CogServer(world.root, latency_ms=200) as slow:
        t0 = time.monotonic()
        assert _get(slow.url + rel, {"Range": "bytes=0-9"})[0] == 206
        assert time.monotonic() - t0 >= 0.2


# --------------------------------------------------------------------------- fault proxy


def test_fault_proxy_error_rate(stac_url):
    n = 50
    with FaultProxy(stac_url, error_rate=0.3, seed=7) as proxy:
        codes = Counter(_get(proxy.url + "/collections")[0] for _ in range(n))
        stats = proxy.stats()
    errors = codes[500] + codes[429]
    assert codes[500] > 0 and codes[429] > 0
    assert 0.15 * n <= errors <= 0.45 * n
    assert codes[200] == n - errors
    assert stats["requests"] == n and stats["faults"] == errors
    assert stats["by_status"].get("500", 0) == codes[500]


def test_fault_proxy_is_deterministic(stac_url):
    runs = []
    for _ in range(2):
        with FaultProxy(stac_url, error_rate=0.3, seed=11) as proxy:
            runs.append([_get(proxy.url + "/")[0] for _ in range(20)])
    assert runs[0] == runs[1]


def test_fault_proxy_rewrites_links_and_bounds_faults(stac_url, world, world_items):
    with FaultProxy(stac_url, error_rate=1.0, max_consecutive_faults=2, seed=0) as proxy:
        codes = [_get(proxy.url + "/")[0] for _ in range(6)]
        assert codes == [500 if c == 500 else 429 for c in codes[:2]] + codes[2:]
        assert codes[2] == 200 and codes[5] == 200
    with FaultProxy(stac_url) as proxy:
        got = _search_all(proxy.url, {"collections": [world.collection["id"]], "limit": 2})
        assert len(got) == len(world_items)
        paths = proxy.stats()["paths"]
        assert paths["/search"] == -(-len(world_items) // 2)  # every page went through the proxy
        status, body, _ = _get(proxy.url + "/")
        assert stac_url not in body.decode()


def test_fault_proxy_latency_in_front_of_cogs(cog_server, world_items):
    import time

    _, asset = _first_asset(world_items[0])
    rel = asset["href"][len(cog_server.url):]
    with FaultProxy(cog_server.url, latency_ms=150) as proxy:
        assert proxy.url.endswith("/")
        t0 = time.monotonic()
        status, body, _ = _get(proxy.url + rel, {"Range": "bytes=0-99"})
        assert time.monotonic() - t0 >= 0.15
        assert status == 206 and len(body) == 100


def test_pystac_client_retries_through_faulty_proxy(stac_url, world, world_items):
    from pystac_client import Client
    from pystac_client.stac_api_io import StacApiIO
    from urllib3 import Retry

    retry = Retry(
        total=10, backoff_factor=0.01, status_forcelist=[429, 500, 502, 503, 504],
        allowed_methods=None, respect_retry_after_header=False,
    )
    with FaultProxy(stac_url, error_rate=0.3, seed=5) as proxy:
        client = Client.open(proxy.url, stac_io=StacApiIO(max_retries=retry))
        search = client.search(collections=[world.collection["id"]], limit=2)
        ids = [it.id for it in search.items()]
        stats = proxy.stats()
    assert sorted(ids) == sorted(it["id"] for it in world_items)
    assert stats["faults"] > 0


def test_session_world_covers_the_cases(world, world_items):
    props = [it["properties"] for it in world_items]
    assert world.collection["id"] == "sentinel-2-l2a"
    assert {p["proj:epsg"] for p in props} >= {32630, 32631, 32632, 32635}
    baselines = {p["s2:processing_baseline"] for p in props}
    assert any(b < "04.00" for b in baselines) and any(b >= "04.00" for b in baselines)
    assert any(p["eo:cloud_cover"] < 10 for p in props)
    assert any(p["eo:cloud_cover"] >= 10 for p in props)
