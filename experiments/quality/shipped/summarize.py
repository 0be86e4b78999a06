"""RESULTS.md of experiments/quality/shipped (issue 27's bar) from the evaluate outputs `make quality-shipped` wrote.

Per model and image set, per mask set and per hole-area bin (``area_bin`` of per_image.csv's ``hole_fraction``):
crops, model PSNR of the hole against OpenCV Telea and Navier-Stokes, the margin over the better fill (paired
bootstrap 95% interval), SSIM of the whole image against the better fill's, and the bar's verdict: **met** when the
PSNR margin is at least +1.00 dB and the model is ahead on whole-image SSIM. Then every row in one bar table.
The same figures go to results.json (what experiments/quality/shipped/model_cards.py reads for docs/models.md).

    python experiments/quality/shipped/summarize.py [--dir experiments/quality/shipped]
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from ctx_inpaint.evaluation.stats import paired_bootstrap
from ctx_inpaint.masks.sets import area_bin

HERE = Path(__file__).resolve().parent
MODELS = ("freeform", "center")
IMAGES = {
    "holdout": "campus hold-out (the recipes' validation photos)",
    "places": "other places from the same package (never trained on)",
    "cross": "photos from scikit-learn, scikit-image, PyWavelets (never trained on)",
}
# The mask sets the bar applies to; the centre model is judged on the centre hole only (other sets: shown).
BAR_SETS = {"freeform": None, "center": {"center"}}
FILLS = {"telea": "Telea", "ns": "NS"}
MIN_MARGIN_DB = 1.0


def compare(rows: dict[str, list[dict]]) -> dict:
    """One row of a table from the paired crops of each method: means, the better fill per metric, the margins."""
    mean = {
        m: {k: float(np.mean([r[k] for r in rs])) for k in ("psnr", "ssim_whole")} for m, rs in rows.items()
    }
    best = {k: max(FILLS, key=lambda f: mean[f][k]) for k in ("psnr", "ssim_whole")}
    psnr_ci = paired_bootstrap([r["psnr"] for r in rows["model"]], [r["psnr"] for r in rows[best["psnr"]]])
    margin = mean["model"]["psnr"] - mean[best["psnr"]]["psnr"]
    ssim_gap = mean["model"]["ssim_whole"] - mean[best["ssim_whole"]]["ssim_whole"]
    return {
        "n": len(rows["model"]),
        "mean": mean,
        "best": best,
        "margin": margin,
        "margin_ci": (psnr_ci["lo"], psnr_ci["hi"]),
        "ssim_gap": ssim_gap,
        "met": margin >= MIN_MARGIN_DB and ssim_gap > 0,
    }


def read_rows(folder: Path) -> dict[str, dict[str, list[dict]]]:
    """per_image.csv as {mask set: {method: rows in index order}} with the metrics as floats."""
    out: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    with open(folder / "per_image.csv", newline="") as f:
        for r in csv.DictReader(f):
            r |= {k: float(r[k]) for k in ("hole_fraction", "psnr", "ssim_whole")} | {
                "index": int(r["index"])
            }
            out[r["mask_set"]][r["method"]].append(r)
    for methods in out.values():
        for rs in methods.values():
            rs.sort(key=lambda r: r["index"])
    return out


def by_bin(methods: dict[str, list[dict]]) -> dict[str, dict[str, list[dict]]]:
    """The same crops split by hole-area bin (a crop's bin is its own hole fraction, equal for every method)."""
    bins: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for m, rs in methods.items():
        for r in rs:
            bins[area_bin(r["hole_fraction"])][m].append(r)
    return dict(sorted(bins.items(), key=lambda kv: int(kv[0].split("-")[0])))


def verdict(row: dict, in_bar: bool) -> str:
    if not in_bar:
        return "(not in the bar)"
    return "**met**" if row["met"] else "not met"


def row_record(set_name: str, label: str, r: dict, in_bar: bool) -> dict:
    """One table row for results.json: the figures as numbers, the verdict as the table words it."""
    m, best = r["mean"], r["best"]
    return {
        "mask_set": set_name,
        "hole_area": label,
        "n": r["n"],
        "psnr": {k: m[k]["psnr"] for k in m},
        "ssim_whole": {k: m[k]["ssim_whole"] for k in m},
        "better_fill_psnr": best["psnr"],
        "better_fill_ssim_whole": best["ssim_whole"],
        "margin_db": r["margin"],
        "margin_ci95": list(r["margin_ci"]),
        "ssim_whole_gap": r["ssim_gap"],
        "in_bar": in_bar,
        "met": bool(r["met"]) if in_bar else None,
    }


def section(model: str, images: str, folder: Path, bar: list, results: list | None = None) -> list[str]:
    s = json.loads((folder / "summary.json").read_text())
    t = s.get("trained") or {}
    record = {
        "model": model,
        "images": images,
        "folder": folder.name,
        "checkpoint": s["checkpoint"],
        "model_name": s.get("model_name"),
        "trained": t,
        "image_set": s["images"],
        "image_files": s["image_files"],
        "samples": s["samples"],
        "crops_per_image": s["crops_per_image"],
        "short_side": s["short_side"],
        "seed": s["seed"],
        "rows": [],
    }
    if results is not None:
        results.append(record)
    lines = [
        f"## `{model}` model on {s['images']}: {IMAGES[images]}",
        "",
        f"`{folder.name}/`: model `{s['checkpoint']}` ({s.get('model_name')}; epoch {t.get('epoch', '?')}, "
        f"{t.get('global_step', '?')} optimizer steps, {t.get('train_seconds', '?')} s of training); "
        f"{s['samples']} crops of {s['input_size']} px from {s['image_files']} photos (short side "
        f"{s['short_side']}, {s['crops_per_image']} per photo, seed {s['seed']}, images "
        f"`{next(iter(s['mask_sets'].values()))['images_fingerprint']}`)",
        "",
        "| mask set | hole area | n | model PSNR | Telea | NS | margin over the better fill [95%] | "
        "model SSIM whole | better fill's | bar |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    wanted, notes = BAR_SETS[model], []
    for set_name, methods in read_rows(folder).items():
        if "model" not in methods:
            continue
        in_bar = wanted is None or set_name in wanted
        bins = by_bin(methods)
        # One bin holding every crop (the centre hole, random regions): one row, both the set and its bin.
        groups = {f"all = {next(iter(bins))}": methods} if len(bins) == 1 else {"all": methods, **bins}
        for label, rows in groups.items():
            r = compare(rows)
            m, best = r["mean"], r["best"]
            lo, hi = r["margin_ci"]
            lines.append(
                f"| {set_name if label.startswith('all') else ''} | {label} | {r['n']} | {m['model']['psnr']:.2f} | "
                f"{m['telea']['psnr']:.2f} | {m['ns']['psnr']:.2f} | {r['margin']:+.2f} [{lo:+.2f}, {hi:+.2f}] "
                f"vs {FILLS[best['psnr']]} | {m['model']['ssim_whole']:.4f} | "
                f"{m[best['ssim_whole']]['ssim_whole']:.4f} ({FILLS[best['ssim_whole']]}) | {verdict(r, in_bar)} |"
            )
            if in_bar:
                bar.append((model, s["images"], set_name, label, r))
            record["rows"].append(row_record(set_name, label, r, in_bar))
        if note := s["mask_sets"].get(set_name, {}).get("note"):
            notes.append(f"- {set_name}: {note}")
    return lines + ["", *notes, ""] if notes else lines + [""]


def ns_check(folder: Path, results: dict | None = None) -> list[str]:
    """The centre model against Navier-Stokes on the cross-source centre hole (the issue names it)."""
    rows = read_rows(folder).get("center", {})
    if "model" not in rows or "ns" not in rows:
        return []
    psnr = paired_bootstrap([r["psnr"] for r in rows["model"]], [r["psnr"] for r in rows["ns"]])
    ssim = paired_bootstrap([r["ssim_whole"] for r in rows["model"]], [r["ssim_whole"] for r in rows["ns"]])
    ahead = psnr["mean"] > 0 and ssim["mean"] > 0
    if results is not None:
        results["center_vs_ns_cross"] = {"psnr": dict(psnr), "ssim_whole": dict(ssim), "ahead": ahead}
    return [
        f"`center` model minus Navier-Stokes on the cross-source centre hole ({psnr['n']} crops): PSNR hole "
        f"{psnr['mean']:+.2f} dB [{psnr['lo']:+.2f}, {psnr['hi']:+.2f}] ({psnr['wins']} crops ahead), SSIM whole "
        f"{ssim['mean']:+.4f} [{ssim['lo']:+.4f}, {ssim['hi']:+.4f}]: {'**ahead**' if ahead else 'not ahead'}.",
        "",
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--dir", type=Path, default=HERE, help="the folder holding {freeform,center}_{holdout,...}/"
    )
    root = p.parse_args(argv).dir
    out = [
        "# Issue 27's bar: the shipped models against OpenCV (generated by `make quality-shipped`; do not edit)",
        "",
        f"Bar: on every mask set and every hole-area bin, model PSNR of the hole at least +{MIN_MARGIN_DB:.2f} dB "
        "above the better of Telea and Navier-Stokes on that row, and model SSIM of the whole image above the "
        "better fill's on that row (the better fill is taken per metric). The `center` model is judged on the "
        "centre hole. Intervals: paired bootstrap 95% of the PSNR margin over crops (5,000 resamples); crops of "
        "one photo are not independent, so read them as optimistic. A bin of few crops is noisy: see n.",
        "",
    ]
    bar: list = []
    missing = []
    sections: list = []
    results: dict = {}
    for model in MODELS:
        for images in IMAGES:
            folder = root / f"{model}_{images}"
            if (folder / "per_image.csv").is_file():
                out += section(model, images, folder, bar, sections)
            else:
                missing.append(folder.name)
    if (root / "center_cross" / "per_image.csv").is_file():
        out += ns_check(root / "center_cross", results)
    out += [
        "## The bar, row by row",
        "",
        "| model | images | mask set | hole area | n | margin (dB) | SSIM whole ahead by | bar |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, images, set_name, label, r in bar:
        out.append(
            f"| {model} | {images} | {set_name} | {label} | {r['n']} | {r['margin']:+.2f} | "
            f"{r['ssim_gap']:+.4f} | {'**met**' if r['met'] else 'not met'} |"
        )
    mixed = {}
    for model in MODELS:  # a candidate's last.ckpt rewritten between two evaluate runs: say so
        steps = {
            (json.loads(f.read_text()).get("trained") or {}).get("global_step")
            for f in root.glob(f"{model}_*/summary.json")
        }
        if len(steps) > 1:
            mixed[model] = sorted(steps, key=str)
            out += [
                f"**Warning:** the `{model}` sections scored different checkpoints (steps {sorted(steps)}).",
                "",
            ]
    met = sum(r["met"] for *_, r in bar)
    overall = "**met**" if bar and met == len(bar) and not missing else "not met"
    out += [
        "",
        f"Overall: {overall} ({met} of {len(bar)} rows met"
        + (f"; not scored: {', '.join(missing)}" if missing else "")
        + ").",
        "",
    ]
    (root / "RESULTS.md").write_text("\n".join(out))
    results = {
        "made_by": "make quality-shipped (experiments/quality/shipped/summarize.py)",
        "bar": {
            "min_margin_db": MIN_MARGIN_DB,
            "sets": {m: sorted(s) if s else "all" for m, s in BAR_SETS.items()},
        },
        "image_sets": IMAGES,
        "overall": {"met": overall == "**met**", "rows_met": met, "rows": len(bar), "not_scored": missing},
        "mixed_checkpoints": mixed,
        "sections": sections,
        **results,
    }
    (root / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {root / 'RESULTS.md'} and results.json: bar {overall}, {met}/{len(bar)} rows met")


if __name__ == "__main__":
    main()
