#!/usr/bin/env bash
# `make train` (campus_cpu, its 29-minute budget) at two commits at once, one CPU core each (taskset, 1 thread),
# so the shared machine's swings hit both runs alike: sequential runs minutes apart would measure the machine.
# Each run also carries Lightning's SimpleProfiler (where an epoch's time goes). Run dirs (with their 419 MB
# checkpoints) go to OUT; `timeline.py` reads them and writes the committed record.
#   experiments/perf/time_to_quality/run_side_by_side.sh BEFORE_REV AFTER_REV OUT [hydra overrides...]
# BEFORE_ARGS / AFTER_ARGS (space-separated Hydra overrides) go to one side only: the same revision twice with
# AFTER_ARGS=trainer.precision=bf16-mixed compares precisions (make bf16-quality). BEFORE_EXPERIMENT /
# AFTER_EXPERIMENT (default campus_cpu) pick each side's recipe: make train-speedup compares the old make train
# (campus_cpu in float32) with the new default recipe at its resolved precision.
set -euo pipefail
before_rev=${1:?before revision}
after_rev=${2:?after revision}
out=${3:?output folder}
shift 3
repo=$(git rev-parse --show-toplevel)
py=$repo/.venv/bin/python
[ "$(nproc)" -ge 2 ] || { echo "run_side_by_side.sh: needs 2 CPU cores, this machine has $(nproc)"; exit 2; }
[ ! -e "$out" ] || { echo "run_side_by_side.sh: $out exists; choose a new folder"; exit 2; }
work=$(mktemp -d -t ctx_ttq_XXXXXX)
trap 'git -C "$repo" worktree remove --force "$work/before" 2>/dev/null; git -C "$repo" worktree remove --force "$work/after" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$out"
out=$(cd "$out" && pwd)

launch() {
  local side=$1 rev=$2 core=$3 experiment=$4
  shift 4
  git -C "$repo" worktree add --detach "$work/$side" "$rev" >/dev/null
  mkdir -p "$out/$side"
  git -C "$work/$side" rev-parse HEAD >"$out/$side/revision"
  (
    cd "$work/$side" # python -m runs the package (and conf/) of this checkout
    date +%s.%N >"$out/$side/launched_at"
    OMP_NUM_THREADS=1 taskset -c "$core" "$py" -m ctx_inpaint.train +experiment="$experiment" \
      hydra.run.dir="$out/$side/run" \
      "+trainer.profiler={_target_:pytorch_lightning.profilers.SimpleProfiler,dirpath:$out/$side,filename:profile}" \
      "$@" >"$out/$side/train.out" 2>&1
    echo $? >"$out/$side/exit_code"
    date +%s.%N >"$out/$side/exited_at"
  )
}

echo "[ttq] $(date -u +%FT%TZ) before=$before_rev (core 0) after=$after_rev (core 1) -> $out"
launch before "$before_rev" 0 "${BEFORE_EXPERIMENT:-campus_cpu}" ${BEFORE_ARGS:-} "$@" &
launch after "$after_rev" 1 "${AFTER_EXPERIMENT:-campus_cpu}" ${AFTER_ARGS:-} "$@" &
wait
echo "[ttq] $(date -u +%FT%TZ) done: before exit $(cat "$out/before/exit_code"), after exit $(cat "$out/after/exit_code")"
