#!/bin/bash
# Probes around campus_cpu (experiments/quality/README.md): 5 minutes each of `+experiment=campus_cpu` with one
# change (ring weight 3; learning rate 4e-4 for G and D), one after the other, under the heavy-job lock.
# Results are copied to experiments/quality/probes_cpu/<name>/ for summarize.py.
#   bash experiments/quality/probe_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
probe() {
    local name=$1
    shift
    local run=logs/runs/probe_cpu_$name out=experiments/quality/probes_cpu/$name
    flock /tmp/ctx_heavy.lock "$PY" -m ctx_inpaint.train +experiment=campus_cpu logger=csv \
        trainer.max_time=00:00:05:00 "hydra.run.dir=$run" "$@"
    mkdir -p "$out"
    cp "$run/metrics.csv" "$run/run_status.json" "$out/"
    "$PY" -c 'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))' \
        "$run/.hydra/overrides.yaml" > "$out/overrides.json"
}
probe ring3 masks.overlap_weight=3
probe lr4e4 optim.generator.lr=4e-4 optim.discriminator.lr=4e-4
