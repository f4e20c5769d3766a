#!/bin/sh
# The gate's configurations, one after another in the background (each resumable: run this again after a kill).
#   nohup sh benchmarks/adapter_gate_runs.sh > ~/.cache/routehead-rag/adapters/gate.log 2>&1 &
set -e
PY=${PY:-.venv/bin/python}
$PY benchmarks/adapter_gate.py --name seq-l12-r16-lr3e-4 --layout sequential --lr 3e-4 --steps 600
$PY benchmarks/adapter_gate.py --name block-l12-r16-lr3e-4 --layout block --lr 3e-4 --steps 600
