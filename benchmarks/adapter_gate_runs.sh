#!/bin/sh
# The gate's configurations, one after another in the background (each resumable: run this again after a kill).
# One thread each (OMP_NUM_THREADS=1): on 2 shared cores a two-thread torch process beside another busy process
# spins on its barriers and runs ten times slower (measured here: 3.7 s a step alone, 48 s beside a test run).
#   nohup sh benchmarks/adapter_gate_runs.sh > ~/.cache/routehead-rag/adapters/gate.log 2>&1 &
set -e
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
$PY benchmarks/adapter_gate.py --name seq-l12-r16-lr3e-4 --layout sequential --lr 3e-4 --steps 600
$PY benchmarks/adapter_gate.py --name block-l12-r16-lr3e-4 --layout block --lr 3e-4 --steps 600
# lr 1e-3 (block, 225 steps): unstable, its loss back at chance by steps 100-225 (docs/method.md); not continued.
$PY benchmarks/adapter_gate.py --name block-l12-r16-lr3e-4-long --layout block --lr 3e-4 --steps 1500 --n-docs 12
# Gemma 3 270M once (layer 11 is its middle full-attention layer: the others below 17 see a 512-token window only).
$PY benchmarks/adapter_gate.py --name gemma-block-l11-r16-lr3e-4 --model gemma-3-270m --layer 11 --layout block --lr 3e-4 --steps 600
# The block adapter trained further on lists of BM25's negatives only (no random ones, which the test lists never hold).
$PY benchmarks/adapter_gate.py --name block-l12-r16-lr3e-4-hard --start block-l12-r16-lr3e-4 --n-random 0 --seed 1 --layout block --lr 3e-4 --steps 500
# (stopped at step ~170 for the next: both trained adapters had moved the query rows' attention off the documents)
# The mass loss: the positive's share of all the query rows' attention, so that attention cannot leave the documents.
$PY benchmarks/adapter_gate.py --name block-l12-r16-lr3e-4-mass --loss mass --layout block --lr 3e-4 --steps 600
# Gemma untrained (LoRA B = 0: the frozen model read by the same scorer), to tell training from the backbone.
$PY benchmarks/adapter_gate.py --name gemma-block-l11-zero-shot --model gemma-3-270m --layer 11 --layout block --steps 0
