"""Install check (``make install-check``, run by ``make test``): the package a user installs.

Builds the sdist and, from it, the wheel (``python -m build``), installs the wheel into a
fresh virtual environment in a temporary directory outside the clone (its dependencies come
from the package registry, pip's cache makes that fast), and there, with the temporary
directory as the working directory:

1. every file of the clone's ``xsits/`` package (git's list, less Python caches) is in the
   wheel and in the sdist: package data that a clone has and a wheel lacks fails here;
2. ``xsits demo`` runs (a fresh demo world in the temporary cache);
3. ``intake.cat.xsits`` lists every packaged entry (at least :data:`REQUIRED_ENTRIES`, and
   each entry of the clone's ``xsits/catalogs/*.yaml``), each opens with its defaults on the
   bundled points, and the demo entry finds its six features offline;
4. every name in ``xsits.__all__`` imports.

Prints one line per check and a closing ``N passed, N failed`` line; exits 1 on any failure.
Usage: ``python tests/install_check.py [--keep]`` (``--keep``: leave the directory).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Entries a release must ship whatever the clone holds (removing one fails the check).
REQUIRED_ENTRIES = ("demo", "s2_earth_search", "s2_planetary_computer", "s2_points",
                    "landsat_planetary_computer", "landsat_earth_search",
                    "hls_s30_planetary_computer", "hls_l30_planetary_computer", "hls_s30_nasa",
                    "hls_l30_nasa", "s1_planetary_computer")

# Runs inside the fresh environment; argv: the entries to find.
_IN_VENV = textwrap.dedent('''
    import sys, warnings
    import intake
    import xsits

    missing = [n for n in xsits.__all__ if not hasattr(xsits, n)]
    assert not missing, f"xsits.__all__ names missing: {missing}"
    ns = {}
    exec("from xsits import *", ns)
    assert set(xsits.__all__) <= set(ns), "from xsits import * lacks names"
    print(f"imported {len(xsits.__all__)} names of xsits.__all__ from {xsits.__file__}")

    cat = intake.cat.xsits
    names = sorted(cat)
    want = sys.argv[1:]
    lacking = sorted(set(want) - set(names))
    assert not lacking, f"intake.cat.xsits lacks {lacking}; it has {names}"
    for name in names:
        src = cat[name]
        assert type(src).__name__ == "SitsSource", (name, type(src))
        with open(src._aoi_arg) as f:  # the bundled points, from the installed package
            assert '"pt_id"' in f.read(), name
    demo = cat.demo(mask=True, gapfill="linear")
    info = demo.discover()
    assert info["npartitions"] == 6, (info["npartitions"], info["metadata"].get("missing"))
    cube = demo.read_partition("7")
    assert cube.sizes["y"] == cube.sizes["x"] == 128, dict(cube.sizes)
    print(f"intake.cat.xsits: {names}; demo: {info['npartitions']} features")
''')


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        shown = " ".join("<script>" if "\n" in str(a) else str(a) for a in cmd)
        raise RuntimeError(f"{shown} exited {proc.returncode}:\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def _package_files() -> list[str]:
    """The clone's files under ``xsits/`` (git's list, else the tree), without caches."""
    try:
        out = _run(["git", "ls-files", "-z", "xsits"], cwd=REPO).split("\0")
        files = [f for f in out if f and (REPO / f).is_file()]
    except (RuntimeError, OSError):
        files = [str(p.relative_to(REPO)) for p in (REPO / "xsits").rglob("*") if p.is_file()]
    return sorted(f for f in files if "__pycache__" not in f and not f.endswith(".pyc"))


def _yaml_entries() -> list[str]:
    import yaml

    names: list[str] = []
    for path in sorted((REPO / "xsits" / "catalogs").glob("*.yaml")):
        names += list((yaml.safe_load(path.read_text()) or {}).get("sources") or {})
    return names


def main() -> int:
    keep = "--keep" in sys.argv
    tmp = Path(tempfile.mkdtemp(prefix="xsits-install-"))
    assert REPO not in tmp.parents
    results: list[tuple[str, bool, str]] = []

    def check(name: str, fn) -> None:
        t0 = time.perf_counter()
        try:
            detail = fn() or ""
            ok = True
        except Exception as err:  # noqa: BLE001  (each check reports its own failure)
            detail, ok = str(err), False
        seconds = time.perf_counter() - t0
        results.append((name, ok, detail))
        print(f"{'PASSED' if ok else 'FAILED'} {name} ({seconds:.1f} s) {detail}".rstrip(),
              flush=True)

    dist, venv = tmp / "dist", tmp / "venv"
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(XSITS_CACHE_DIR=str(tmp / "cache"), MPLBACKEND="Agg")

    def build() -> str:
        _run([sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)], cwd=tmp)
        return ", ".join(sorted(p.name for p in dist.iterdir()))

    def contents() -> str:
        (wheel,) = glob.glob(str(dist / "*.whl"))
        (sdist,) = glob.glob(str(dist / "*.tar.gz"))
        in_wheel = set(zipfile.ZipFile(wheel).namelist())
        with tarfile.open(sdist) as tar:
            in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        files = _package_files()
        lacking = [f for f in files if f not in in_wheel or f not in in_sdist]
        if lacking:
            raise AssertionError(f"the clone has and the wheel or sdist lacks: {lacking}")
        return f"{len(files)} package files in both"

    def install() -> str:
        _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp)
        (wheel,) = glob.glob(str(dist / "*.whl"))
        _run([str(py), "-m", "pip", "install", "-q", "--no-compile", wheel], cwd=tmp, env=env)
        return ""

    def demo() -> str:
        out = _run([str(venv / "bin" / "xsits"), "demo", "--out", str(tmp / "demo")],
                   cwd=tmp, env=env)
        written = sorted(p.name for p in (tmp / "demo").glob("*.nc"))
        if len(written) != 6:
            raise AssertionError(f"xsits demo wrote {written}:\n{out[-2000:]}")
        return f"{len(written)} NetCDF files"

    def catalogs_and_names() -> str:
        want = sorted({*REQUIRED_ENTRIES, *_yaml_entries()})
        return _run([str(py), "-c", _IN_VENV, *want], cwd=tmp, env=env).strip().replace(
            "\n", "; ")

    t0 = time.perf_counter()
    try:
        for name, fn in [("build sdist and wheel", build), ("package data", contents),
                         ("install the wheel in a fresh venv", install),
                         ("xsits demo", demo),
                         ("intake.cat.xsits and xsits.__all__", catalogs_and_names)]:
            check(name, fn)
            if not results[-1][1] and name in ("build sdist and wheel",
                                                "install the wheel in a fresh venv"):
                break
    finally:
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    failed = sum(not ok for _, ok, _ in results)
    print(f"install check: {time.perf_counter() - t0:.0f} s")
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
