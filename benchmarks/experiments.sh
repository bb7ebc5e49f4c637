#!/usr/bin/env bash
# Local experiments on xsits' knobs (nothing in xsits/ is edited): each variant is the xsits
# contender alone, both modes, 0 and 50 ms. Results land in benchmarks/results/ with a tag.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
LAT=${LAT:-0,50}
CHUNKS='{"chunks": {"time": 8, "x": 2048, "y": 2048}}'
run() { tag=$1; shift; echo "== $tag"; "$PY" benchmarks/run.py --only xsits --features 24 \
        --latency-ms "$LAT" --repeat 1 --tag "$tag" "$@" | grep -E '^\| |^results'; }
run "io8x4" --xsits-kwargs '{"io_threads": 8, "workers": 4}'
run "io32x8" --xsits-kwargs '{"io_threads": 32, "workers": 8}'
run "processes2" --xsits-kwargs '{"scheduler": "processes", "workers": 2}'
run "time8-chunks" --xsits-args "--open-kwargs '$CHUNKS'"
