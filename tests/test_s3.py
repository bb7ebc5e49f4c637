"""``s3://`` hrefs (Earth Search's jp2 and Landsat assets, requester-pays buckets) against a
local S3-compatible server (moto's server mode on 127.0.0.1) holding copies of the test COGs.
"""

from __future__ import annotations

import json
import time

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import Point

import xsits
from xsits.errors import LoadError
from xsits.io import fetch, reader
from xsits.testing.scenes import WorldSpec
from xsits.testing.servers import CogServer
from xsits.testing.world import make_world

pytest.importorskip("moto.server", reason="the test extra (moto[server]) is not installed")

POINT = (11.35, 48.05)
SPEC = dict(points=(POINT,), start="2024-05-01", end="2024-05-30", revisit_days=5,
            bands=("B04", "B08", "SCL"), window_m=1280, blocksize=128)
BUCKET = "sentinel-cogs-test"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from xsits.testing.servers import S3Server

    world = make_world(tmp_path_factory.mktemp("s3world"), WorldSpec(**SPEC))
    with CogServer(world.root) as cogs, S3Server() as s3:
        keys = s3.upload(world.root, BUCKET, requester_pays=True)
        assert any(k.endswith("B04_10m.tif") for k in keys)
        yield world, cogs, s3


@pytest.fixture
def aws_env(monkeypatch, served):
    """Credentials from the standard environment, as a user would set them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    reader.clear_cache()
    yield served
    reader.clear_cache()


def _cube(world, base, tmp_path, name):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": world.item_dicts(base)}))
    aoi = gpd.GeoDataFrame({"feature_id": ["p"]}, geometry=[Point(POINT)], crs=4326)
    cubes = xsits.open_cubes(aoi, stac=str(path), bands=["B04", "B08", "SCL"],
                             start=SPEC["start"], end=SPEC["end"], resolution=10,
                             mode="patch", size=(16, 16))
    return cubes["p"]


@pytest.mark.parametrize("fast_reader", [True, False])
def test_s3_values_equal_https(aws_env, tmp_path, fast_reader):
    world, cogs, s3 = aws_env
    https = _cube(world, cogs.url, tmp_path, "https").compute()
    opts = {"endpoint_url": s3.url, "requester_pays": True}
    with xsits.set_options(s3=opts, fast_reader=fast_reader):
        cube = _cube(world, f"s3://{BUCKET}/", tmp_path, "s3")
        got = cube.compute()
        stats = reader.last_load_stats()
    for name in https.data_vars:
        assert got[name].dtype == https[name].dtype
        np.testing.assert_array_equal(got[name].values, https[name].values)
    assert stats["fast" if fast_reader else "gdal"] > 0  # that reader read them
    assert not fast_reader or stats["gdal"] == 0


def test_s3_settings_from_the_environment(aws_env, tmp_path, monkeypatch):
    world, cogs, s3 = aws_env
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.url)
    monkeypatch.setenv("AWS_REQUESTER_PAYS", "true")
    assert fetch.s3_settings()["endpoint_url"] == s3.url
    https = _cube(world, cogs.url, tmp_path, "https").compute()
    got = _cube(world, f"s3://{BUCKET}/", tmp_path, "s3").compute()
    np.testing.assert_array_equal(got.B04.values, https.B04.values)


def test_no_such_key_fails_at_once(aws_env):
    _, _, s3 = aws_env
    with xsits.set_options(s3={"endpoint_url": s3.url}, retry_delay=1.0):
        t0 = time.monotonic()
        with pytest.raises(LoadError, match=r"s3://sentinel-cogs-test/nope/B04.tif: HTTP 404"):
            fetch.submit(f"s3://{BUCKET}/nope/B04.tif", 0, 100).result()
        assert time.monotonic() - t0 < 1.0  # not retried (a retry would wait 1 s)


def test_access_denied_fails_at_once(aws_env):
    """A bucket that does not exist answers 404, a bucket policy that denies answers 403:
    neither is retried, and the message names the href without credentials."""
    _, _, s3 = aws_env
    client = s3.client()
    client.create_bucket(Bucket="private-test")
    client.put_object(Bucket="private-test", Key="a.tif", Body=b"x" * 10)
    client.put_bucket_policy(Bucket="private-test", Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": "arn:aws:s3:::private-test/*"}]}))
    with xsits.set_options(s3={"endpoint_url": s3.url, "aws_access_key_id": "testing",
                               "aws_secret_access_key": "SECRETkey"}, retry_delay=1.0):
        t0 = time.monotonic()
        with pytest.raises(LoadError) as info:
            fetch.submit("s3://private-test/a.tif", 0, 10).result()
        took = time.monotonic() - t0
    msg = str(info.value)
    assert "s3://private-test/a.tif" in msg and "SECRET" not in msg
    assert "HTTP 403" in msg and "requester_pays" in msg  # the fix for S3
    assert took < 1.0


def test_gdal_gets_the_same_settings(served):
    _, _, s3 = served
    with xsits.set_options(s3={"endpoint_url": s3.url, "requester_pays": True,
                               "anonymous": True}):
        env = fetch.gdal_s3_env()
    assert env["AWS_S3_ENDPOINT"] == s3.url.split("//")[1]
    assert env["AWS_HTTPS"] == "NO" and env["AWS_VIRTUAL_HOSTING"] == "FALSE"
    assert env["AWS_REQUEST_PAYER"] == "requester" and env["AWS_NO_SIGN_REQUEST"] == "YES"
