#!/usr/bin/env bash
# Every speed-up tried for issue 5, one at a time, each timed by the benchmark against the same baseline:
#   make bench-attempts [ATTEMPTS="name ..."]    (writes experiments/perf/attempts/<name>.json)
# Each line: name, then the Hydra overrides added to the l2_0999 bench on the Paris-size JPEGs
# (env:VAR=value tokens set environment variables). $STEP times the Lightning step and the bare loop only.
set -euo pipefail
set -f # overrides hold [..]: no globbing
PY=${PY:-.venv/bin/python}
OUT=${OUT:-experiments/perf/attempts}
JPEGS=${BENCH_JPEGS:-/tmp/ctx_bench_jpegs}
STEP="bench.measure=[train,plain]"
mkdir -p "$OUT"
while read -r name overrides; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  if [[ -n "${ATTEMPTS:-}" && " $ATTEMPTS " != *" $name "* ]]; then continue; fi
  overrides=${overrides//\$STEP/$STEP}
  envs=(); args=()
  for tok in $overrides; do  # env:VAR=value sets an environment variable for that run
    if [[ $tok == env:* ]]; then envs+=("${tok#env:}"); else args+=("$tok"); fi
  done
  echo "=== $name: $overrides"
  env "${envs[@]}" $PY -m ctx_inpaint.bench +experiment=l2_0999 data=folder data.root="$JPEGS" "${args[@]}" \
    bench.out_json="$OUT/$name.json" </dev/null | tail -n 1
done <<'LIST'
reference           model.bottleneck.matmul=false model.decoder.matmul=false bench.measure=[train,plain,baseline]
matmul              bench.measure=[train,plain,baseline]
channels_last       model.channels_last=true $STEP
adam_unfused        optim.generator.fused=false optim.discriminator.fused=false $STEP
adam_foreach        optim.generator.fused=false optim.discriminator.fused=false +optim.generator.foreach=true +optim.discriminator.foreach=true $STEP
adam_fused          optim.generator.fused=true optim.discriminator.fused=true $STEP
bf16                trainer.precision=bf16-mixed $STEP
bf16_channels_last  trainer.precision=bf16-mixed model.channels_last=true $STEP
compile             model.compile=true bench.warmup=3 $STEP
workers0            data.num_workers=0 bench.measure=[data,train,fit]
workers1            data.num_workers=1 bench.measure=[data,train,fit]
workers2            data.num_workers=2 bench.measure=[data,train,fit]
workers1_passive    env:OMP_WAIT_POLICY=PASSIVE data.num_workers=1 bench.measure=[data,train,fit]
no_cache            data.prepared_dir=null data.num_workers=1 bench.measure=[data]
LIST
