#!/bin/bash
# The SSIM-weight probes of experiments/quality/README.md: 5 minutes each of the tuned recipe (as `make
# quality-train` had it before campus_cpu) with model.ssim_weight=0.5 and 0.85, one after the other, under the
# heavy-job lock. Results are copied to experiments/quality/probes_ssim/<name>/ for summarize.py.
#   bash experiments/quality/probe_ssim.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
for weight in 0.5 0.85; do
    name=ssim${weight/./}
    run=logs/runs/probe_$name
    flock /tmp/ctx_heavy.lock "$PY" -m ctx_inpaint.train +experiment=l2_0999 logger=csv \
        model.encoder.width=32 model.decoder.width=32 model.discriminator.width=32 data.batch_size=16 \
        masks.overlap_weight=1 optim.g_lr_mult=1 \
        'optim.scheduler={_target_:torch.optim.lr_scheduler.CosineAnnealingLR,_partial_:true,T_max:60}' \
        trainer.max_epochs=60 trainer.max_time=00:00:05:00 callbacks.model_checkpoint.monitor=null \
        callbacks.model_checkpoint.save_last=link "model.ssim_weight=$weight" "hydra.run.dir=$run"
    out=experiments/quality/probes_ssim/$name
    mkdir -p "$out"
    cp "$run/metrics.csv" "$run/run_status.json" "$out/"
    "$PY" -c 'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))' \
        "$run/.hydra/overrides.yaml" > "$out/overrides.json"
done
