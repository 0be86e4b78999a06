#!/usr/bin/env bash
# Budget probes (issue 11): seconds per optimizer step of every experiment of the `all` sweep, measured
#   A  one process, 2 torch threads (Hydra's basic launcher: one job at a time)
#   B  two processes side by side, 1 thread each (hydra/launcher=joblib with 2 jobs)
#   C  A again for the paper widths / batch of the old budget (l2_0999 only), then A again at the end (drift check)
# Results: experiments/ablations/probes/*.json; summary: python experiments/ablations/probe_summary.py
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=experiments/ablations/probes
mkdir -p "$OUT"
SMALL=(--set +budget.width=32 --set "+budget.alexnet_widths=[48,128,192,192,128]" --set data.batch_size=16)
STEPS=${STEPS:-5}
$PY experiments/ablations/probe_budget.py --threads 2 --steps "$STEPS" "${SMALL[@]}" --out $OUT/A_w32_b16_2threads.json
$PY experiments/ablations/probe_budget.py --threads 1 --steps "$STEPS" "${SMALL[@]}" --out $OUT/B_w32_b16_1thread_first.json &
$PY experiments/ablations/probe_budget.py --threads 1 --steps "$STEPS" "${SMALL[@]}" --out $OUT/B_w32_b16_1thread_second.json
wait
$PY experiments/ablations/probe_budget.py --threads 2 --steps "$STEPS" --experiments l2_0999 --set data.batch_size=32 --out $OUT/C_w64_b32_2threads.json
$PY experiments/ablations/probe_budget.py --threads 2 --steps "$STEPS" --experiments l2_0999,cwfc,random_patches "${SMALL[@]}" --out $OUT/A_w32_b16_2threads_again.json
