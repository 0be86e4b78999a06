"""Markdown tables of the benchmark's JSON files: ``python -m tools.bench_summary experiments/perf``.

Reads ``bench_<experiment>.json`` (``make bench``) and ``attempts/<name>.json`` (``make bench-attempts``, in the
order of ``run_attempts.sh``) and writes ``RESULTS.md`` beside them, so every figure quoted comes from a file.
Ratios are printed with the spread of their per-round ratios and the number of rounds (``value [lo..hi] n=N``);
absolute figures are those of the machine at the time (``machine_now`` in the JSON; older files hold them flat).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ctx_inpaint.common.cli import ArgumentParser

# (key, label, target as text, check) for the issues' bars (issue 5; issue 14 for the interleaved ratios).
TARGETS = [
    (
        "lightning_overhead",
        "Lightning overhead (1 - plain / Lightning step time)",
        "<= 0.03",
        lambda v: v <= 0.03,
    ),
    ("speedup_vs_baseline", "speed-up vs straightforward fp32", ">= 2.0", lambda v: v >= 2.0),
    ("speedup_bf16_vs_baseline", "bf16 speed-up vs straightforward fp32", ">= 3", lambda v: v >= 3.0),
    ("data_over_train", "batch making / train step", ">= 5", lambda v: v >= 5),
    (
        "fraction_of_peak",
        "fraction of peak (Lightning step, matmul of its dtype)",
        ">= 0.40",
        lambda v: v >= 0.40,
    ),
    ("fraction_of_peak_fp32", "fraction of the fp32 matmul peak (bare loop)", "", None),
    ("fraction_of_peak_bf16", "fraction of the bf16 matmul peak (bare loop)", "", None),
    ("train_images_per_s", "train step (Lightning), this machine then", "", None),
    ("plain_images_per_s", "bare PyTorch loop, same settings, then", "", None),
    ("baseline_fp32_images_per_s", "straightforward fp32 loop, then", "", None),
    ("plain_bf16_images_per_s", "bare loop in bf16, then", "", None),
    ("data_batch_images_per_s", "batch making in one process, then", "", None),
    ("data_loader_images_per_s", "train DataLoader with its workers, then", "", None),
    ("end_to_end_images_per_s", "end-to-end trainer.fit, then", "", None),
    ("infer_ms_per_image_b1", "inference ms/image, batch 1, then", "<= 25", lambda v: v <= 25),
    ("infer_ms_per_image_b64", "inference ms/image, batch 64, then", "", None),
    ("flops_per_image", "training GFLOP/image", "", None),
    ("achieved_gflops", "achieved GFLOP/s, then", "", None),
    ("sgemm_gflops", "fp32 matmul GFLOP/s, then", "", None),
    ("bf16_gemm_gflops", "bf16 matmul GFLOP/s, then", "", None),
    ("discriminator_params", "discriminator parameters", "", None),
]


def flat(r: dict) -> dict:
    """One dict of every figure: the ratios at the top level and this machine's absolute figures (older files
    held them flat, the loader's throughput as ``data_images_per_s``)."""
    out = {**r, **(r.get("machine_now") or {})}
    if "data_images_per_s" in out:
        out.setdefault("data_loader_images_per_s", out["data_images_per_s"])
    return out


ATTEMPT_COLUMNS = [
    ("train_images_per_s", "train img/s"),
    ("plain_images_per_s", "plain img/s"),
    ("baseline_fp32_images_per_s", "fp32 baseline img/s"),
    ("fraction_of_peak", "of peak"),
    ("data_loader_images_per_s", "data img/s"),
    ("end_to_end_images_per_s", "end-to-end img/s"),
    ("sgemm_gflops", "sgemm GFLOP/s"),
]


def fmt(key: str, value: float) -> str:
    if key == "flops_per_image":
        return f"{value / 1e9:.2f}"
    if key == "discriminator_params":
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def with_spread(r: dict, key: str) -> str:
    """``value`` or, for an interleaved ratio, ``value [lowest..highest] n=rounds``."""
    text = fmt(key, r[key])
    spread = r.get(f"{key}_spread")
    if spread:
        text += f" [{fmt(key, spread[0])}..{fmt(key, spread[1])}] n={r.get(f'{key}_rounds')}"
    return text


def bench_table(runs: dict[str, dict]) -> list[str]:
    names = list(runs)
    lines = ["| figure | target | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for key, label, target, check in TARGETS:
        if all(flat(runs[n]).get(key) is None for n in names):
            continue
        cells = []
        for name in names:
            r = flat(runs[name])
            if r.get(key) is None:
                cells.append("-")
                continue
            mark = "" if check is None else (" (met)" if check(r[key]) else " (**missed**)")
            cells.append(with_spread(r, key) + mark)
        lines.append(f"| {label} | {target} | " + " | ".join(cells) + " |")
    return lines


def sizes_table(runs: dict[str, dict]) -> list[str]:
    """The batch sweep (``--sizes``): images/s and step time, and the step cost relative to the smallest batch."""
    lines = [
        "| experiment | batch | train img/s | ms/step | step cost vs smallest |",
        "|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        for size, v in (r.get("sizes") or {}).items():
            now = flat(v)
            ips = now.get("images_per_s", now.get("train_images_per_s"))
            cost = f"{v['step_cost_vs_first']:.2f}x"
            if v.get("step_cost_vs_first_spread"):
                lo, hi = v["step_cost_vs_first_spread"]
                cost += f" [{lo:.2f}..{hi:.2f}] n={v.get('step_cost_vs_first_rounds')}"
            lines.append(f"| {name} | {size} | {ips:.1f} | {now['ms_per_step']:.0f} | {cost} |")
    return lines


def attempt_order(script: Path) -> list[tuple[str, str]]:
    """(name, overrides) in the order ``run_attempts.sh`` lists them."""
    text = script.read_text()
    step = re.search(r'^STEP="([^"]*)"', text, re.M)
    block = text.split("<<'LIST'\n", 1)[1].split("\nLIST", 1)[0]
    rows = []
    for line in block.splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, overrides = line.partition(" ")
            overrides = overrides.replace("$STEP", step.group(1) if step else "$STEP")
            rows.append((name, " ".join(overrides.split())))
    return rows


def attempts_table(folder: Path, script: Path) -> list[str]:
    head = "| attempt | overrides | " + " | ".join(label for _, label in ATTEMPT_COLUMNS) + " |"
    lines = [head, "|---|---|" + "---|" * len(ATTEMPT_COLUMNS)]
    for name, overrides in attempt_order(script):
        path = folder / f"{name}.json"
        if not path.is_file():
            continue
        r = flat(json.loads(path.read_text()))
        cells = [fmt(k, r[k]) if k in r else "-" for k, _ in ATTEMPT_COLUMNS]
        lines.append(f"| {name} | `{overrides}` | " + " | ".join(cells) + " |")
    return lines


def ab_table(folder: Path) -> list[str]:
    lines = [
        "| option | reference + | candidate adds | reference img/s | candidate img/s | speed-up (median, min-max, rounds) |",
        "|---|---|---|---|---|---|",
    ]
    for path in sorted(folder.glob("*.json")):
        r = json.loads(path.read_text())
        lines.append(
            f"| {path.stem} | {r.get('reference_overrides', '')} | `{' '.join(r['candidate'])}` "
            f"| {r['reference_images_per_s']:.1f} | {r['candidate_images_per_s']:.1f} "
            f"| {r['speedup']:.3f} ({r['speedup_min']:.3f}-{r['speedup_max']:.3f}, {r.get('rounds', '?')}) |"
        )
    return lines


def precision_lines(path: Path) -> list[str]:
    r = json.loads(path.read_text())
    a, b = r["loss_rec_32-true"], r[f"loss_rec_{r['precision']}"]
    lines = [
        f"`{r['precision']}` against float32, {r['name']}, batch {r['batch_size']}, same seed and batches:",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for key in sorted(k for k in r if k.endswith(("_cosine", "_rel_error"))):
        lines.append(f"| {key} | {r[key]:.4f} |")
    lines += [
        f"| loss_rec after {len(a)} steps, float32 | {a[-1]:.4f} |",
        f"| loss_rec after {len(b)} steps, {r['precision']} | {b[-1]:.4f} |",
        f"| largest relative loss_rec difference over the steps | {r['loss_rec_max_rel_diff']:.4f} |",
    ]
    return lines


def write_summary(folder: Path) -> Path:
    runs = {
        p.stem.removeprefix("bench_"): json.loads(p.read_text()) for p in sorted(folder.glob("bench_*.json"))
    }
    out = ["# Benchmark results (generated by `python -m tools.bench_summary`; do not edit)", ""]
    if runs:
        first = next(iter(runs.values()))
        when = (first.get("machine_now") or {}).get("measured_at")
        out += [
            f"`make bench`: batch {first.get('batch_size')}, {first.get('cpu')} ({first.get('cpu_count')} CPUs, "
            f"{first.get('threads')} threads), torch {first.get('torch')}"
            + (f", measured {when}" if when else "")
            + (
                ". Ratios: median of per-round ratios of interleaved rounds [lowest..highest] n=rounds; "
                'figures marked "then" are that machine\'s at that time.'
                if "rounds" in first
                else ". Measured one block after another (before the interleaved timer)."
            ),
            "",
            *bench_table(runs),
            "",
        ]
        if any(r.get("sizes") for r in runs.values()):
            out += ["Batch sweep (`--sizes`, the Lightning step):", "", *sizes_table(runs), ""]
    script = folder / "run_attempts.sh"
    if (folder / "attempts").is_dir() and script.is_file():
        out += ["## Attempts (`make bench-attempts`, l2_0999, batch 64, one change each)", ""]
        out += attempts_table(folder / "attempts", script) + [""]
    if (folder / "ab").is_dir():
        out += ["## Paired A/B timings (`make bench-ab`, l2_0999, batch 64, bare loop)", ""]
        out += ab_table(folder / "ab") + [""]
    for check in sorted(folder.glob("precision_check_*.json")):
        out += (
            [f"## Precision check (`make bench-precision`, {check.name})", ""] + precision_lines(check) + [""]
        )
    path = folder / "RESULTS.md"
    path.write_text("\n".join(out))
    return path


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=Path("experiments/perf"))
    print(write_summary(parser.parse_args().folder))


if __name__ == "__main__":
    main()
