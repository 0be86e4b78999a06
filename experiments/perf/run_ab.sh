#!/usr/bin/env bash
# Paired A/B timings (ctx_inpaint/benchmark/ab.py): each candidate against its reference in alternating rounds of bare-loop
# steps in one process, so load from other processes hits both alike. l2_0999, batch 64.
#   make bench-ab [AB="name ..."]    (writes experiments/perf/ab/<name>.json)
# Each line: name | overrides of the reference | overrides the candidate adds.
set -euo pipefail
set -f
PY=${PY:-.venv/bin/python}
OUT=${OUT:-experiments/perf/ab}
mkdir -p "$OUT"
while IFS='|' read -r name base cand; do
  name=$(echo "$name" | xargs)
  [[ -z "$name" || "$name" == \#* ]] && continue
  if [[ -n "${AB:-}" && " $AB " != *" $name "* ]]; then continue; fi
  cand=$(echo "$cand" | xargs)
  echo "=== $name: [$base] + [$cand]"
  # shellcheck disable=SC2086
  $PY -m ctx_inpaint.benchmark.ab +experiment=l2_0999 $base "+candidate=\"$cand\"" +out_json="$OUT/$name.json" \
    hydra.run.dir="${TMPDIR:-/tmp}/ctx_ab_run" </dev/null | tail -n 1
done <<'LIST'
matmul             | model.bottleneck.matmul=false model.decoder.matmul=false | model.bottleneck.matmul=true model.decoder.matmul=true
adam_foreach       | optim.generator.fused=false optim.discriminator.fused=false | +optim.generator.foreach=true +optim.discriminator.foreach=true
adam_fused         | optim.generator.fused=false optim.discriminator.fused=false | optim.generator.fused=true optim.discriminator.fused=true
channels_last      |  | model.channels_last=true
bf16               |  | trainer.precision=bf16-mixed
compile            | +ab.warmup=3 | model.compile=true
LIST
