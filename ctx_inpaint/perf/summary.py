"""Markdown tables of the benchmark's JSON files: ``python -m ctx_inpaint.perf.summary experiments/perf``.

Reads ``bench_<experiment>.json`` (``make bench``) and ``attempts/<name>.json`` (``make bench-attempts``, in the
order of ``run_attempts.sh``) and writes ``RESULTS.md`` beside them, so every figure quoted comes from a file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ctx_inpaint.cli import ArgumentParser

# (key, label, target as text, check) for the bars.
TARGETS = [
    ("train_images_per_s", "train step (Lightning)", "", None),
    ("plain_images_per_s", "bare PyTorch loop, same settings", "", None),
    ("lightning_overhead", "Lightning overhead", "<= 0.05", lambda v: v <= 0.05),
    ("baseline_fp32_images_per_s", "straightforward fp32 loop", "", None),
    ("speedup_vs_baseline", "speed-up vs straightforward", ">= 1.25", lambda v: v >= 1.25),
    ("data_images_per_s", "train DataLoader", "", None),
    ("data_over_train", "DataLoader / train", ">= 5", lambda v: v >= 5),
    ("end_to_end_images_per_s", "end-to-end trainer.fit", "", None),
    ("infer_ms_per_image_b1", "inference ms/image, batch 1", "<= 25", lambda v: v <= 25),
    ("infer_ms_per_image_b64", "inference ms/image, batch 64", "", None),
    ("flops_per_image", "training GFLOP/image", "", None),
    ("achieved_gflops", "achieved GFLOP/s", "", None),
    ("sgemm_gflops", "fp32 matmul GFLOP/s", "", None),
    ("fraction_of_peak", "fraction of peak", ">= 0.40", lambda v: v >= 0.40),
    ("discriminator_params", "discriminator parameters", "", None),
]

ATTEMPT_COLUMNS = [
    ("train_images_per_s", "train img/s"),
    ("plain_images_per_s", "plain img/s"),
    ("baseline_fp32_images_per_s", "fp32 baseline img/s"),
    ("fraction_of_peak", "of peak"),
    ("data_images_per_s", "data img/s"),
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


def bench_table(runs: dict[str, dict]) -> list[str]:
    names = list(runs)
    lines = ["| figure | target | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for key, label, target, check in TARGETS:
        cells = []
        for name in names:
            value = runs[name].get(key)
            if value is None:
                cells.append("-")
                continue
            mark = "" if check is None else (" (met)" if check(value) else " (**missed**)")
            cells.append(fmt(key, value) + mark)
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
            lines.append(
                f"| {name} | {size} | {v['train_images_per_s']:.1f} | {v['ms_per_step']:.0f} "
                f"| {v['step_cost_vs_first']:.2f}x |"
            )
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
        r = json.loads(path.read_text())
        cells = [fmt(k, r[k]) if k in r else "-" for k, _ in ATTEMPT_COLUMNS]
        lines.append(f"| {name} | `{overrides}` | " + " | ".join(cells) + " |")
    return lines


def ab_table(folder: Path) -> list[str]:
    lines = [
        "| option | reference + | candidate adds | reference img/s | candidate img/s | speed-up (median, min-max) |",
        "|---|---|---|---|---|---|",
    ]
    for path in sorted(folder.glob("*.json")):
        r = json.loads(path.read_text())
        lines.append(
            f"| {path.stem} | {r.get('reference_overrides', '')} | `{' '.join(r['candidate'])}` "
            f"| {r['reference_images_per_s']:.1f} | {r['candidate_images_per_s']:.1f} "
            f"| {r['speedup']:.3f} ({r['speedup_min']:.3f}-{r['speedup_max']:.3f}) |"
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
    out = ["# Benchmark results (generated by `python -m ctx_inpaint.perf.summary`; do not edit)", ""]
    if runs:
        first = next(iter(runs.values()))
        out += [
            f"`make bench`: batch {first.get('batch_size')}, {first.get('cpu')} ({first.get('cpu_count')} CPUs, "
            f"{first.get('threads')} threads), torch {first.get('torch')}.",
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
