#!/usr/bin/env bash
# 4-minute probes of the free-form recipe (experiments/quality/freeform/README.md): each runs campus_freeform with
# one change, alone on the CPU, and its val metrics (fixed free-form masks on campus/holdout) are kept under
# experiments/quality/freeform/probes/<name>/. Usage: bash probe.sh NAME [overrides...]
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
name=$1
shift
run=logs/probes_freeform/$name
rm -rf "$run"
mkdir -p "$(dirname "$run")"
flock /tmp/ctx_heavy.lock "$PY" -m ctx_inpaint.train +experiment=campus_freeform logger=csv \
  trainer.max_time=00:00:04:00 hydra.run.dir="$run" "$@" > "$run.log" 2>&1 || true
out=experiments/quality/freeform/probes/$name
mkdir -p "$out"
cp "$run/metrics.csv" "$run/.hydra/overrides.yaml" "$out/"
echo "$*" > "$out/command_overrides.txt"
