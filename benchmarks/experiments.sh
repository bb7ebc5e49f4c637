#!/usr/bin/env bash
# Local experiments on xsits' knobs (nothing in xsits/ is edited): each variant is the xsits
# contender alone, both modes, 0 and 50 ms. Results land in benchmarks/results/ with a tag.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
LAT=${LAT:-0,50}
CHUNKS='{"chunks": {"time": 1, "x": 2048, "y": 2048}}'
run() { tag=$1; shift; echo "== $tag"; "$PY" benchmarks/run.py --only xsits --features 24 \
        --latency-ms "$LAT" --repeat 1 --tag "$tag" "$@" | grep -E '^\| |^results'; }
run "workers24" --xsits-kwargs '{"workers": 24}'
run "feature-threads16+time1" --xsits-args "--feature-threads 16 --open-kwargs '$CHUNKS'"
run "workers24+feature-threads16+time1" --xsits-kwargs '{"workers": 24}' \
    --xsits-args "--feature-threads 16 --open-kwargs '$CHUNKS'"
