#!/usr/bin/env bash
# one-seed probe: campus_cpu with g_lr_mult 1 (control) vs 3, side by side, one core each, 14 minutes
cd "$(git rev-parse --show-toplevel)"
out=${1:-logs/ttq/lr_probe_1}; mkdir -p $out  # run from the repository root
run() { side=$1 core=$2; shift 2
  OMP_NUM_THREADS=1 timeout 840 taskset -c $core .venv/bin/python -m ctx_inpaint.train +experiment=campus_cpu logger=csv \
    hydra.run.dir=$out/$side callbacks.progress_bar.refresh_rate=0 "$@" > $out/$side.out 2>&1; }
run control 0 &
run glr3 1 optim.g_lr_mult=3.0 &
wait
