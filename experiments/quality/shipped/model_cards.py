"""docs/models.md (``make model-cards``): one card per shipped model, written from the records only.

Each card reads the model's ``.safetensors`` and JSON (``make weights``: parameters, size, how far, how long and on
what machine it trained, its command, data attribution, training config, float16 cost), the experiment's config
(the JSON's ``training_config``; else ``conf/experiment/<experiment>.yaml`` composed as the CLI would, with the
JSON's stored model and masks config), ``results.json`` of ``make quality-shipped`` (the bar against OpenCV per
image set, mask set and hole-area bin) and ``latency.json`` of ``make quality-latency``. A missing record, or one
made from other weights, is said in the card, never filled in.

    python experiments/quality/shipped/model_cards.py [--pretrained DIR] [--results DIR] [--latency FILE] [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
from pathlib import Path
from typing import Any

from ctx_inpaint.inference.weights import PRETRAINED, PRETRAINED_DIR

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
FILLS = {"telea": "Telea", "ns": "Navier-Stokes", "mean": "mean colour"}
PURPOSE = {"CenterMask": "centre hole", "FreeForm": "free-form holes"}


def shown(path: Path) -> str:
    """A path as the repository names it (else as given)."""
    resolved = path.resolve()
    return resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else str(path)


def esc(text: Any) -> str:
    """Free text from a record, safe in Markdown: no raw HTML (a ``<that worktree>`` would vanish)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code(text: Any) -> str:
    """Text from a record as a code span, fenced with more backticks than it holds."""
    text = str(text)
    fence = "`"
    while fence in text:  # longer than any run of backticks in the text
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def duration(seconds: float | None) -> str:
    if not isinstance(seconds, int | float):
        return "not recorded"
    if seconds >= 3600:
        return f"{seconds:,.0f} s ({seconds / 3600:.2f} h)"
    return f"{seconds:,.0f} s ({seconds / 60:.1f} min)"


def short(target: str | None) -> str:
    return (target or "?").rsplit(".", 1)[-1]


# ---- the config: what the model is and how it was trained -----------------------------------------------------


def config_of(meta: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The model's training config and where it came from: the JSON's ``training_config`` (the run's own, written
    by ``make weights``), else the experiment composed from ``conf/`` now, its model and masks replaced by the JSON's
    stored ones (what the weights were built with)."""
    stored = meta.get("ctx_inpaint_config") or {}
    if isinstance(meta.get("training_config"), dict):
        return meta["training_config"], "the run's config as recorded in the JSON (`training_config`)"
    from omegaconf import OmegaConf

    from ctx_inpaint.config.compose import compose_config

    cfg = compose_config([f"+experiment={meta['experiment']}"])
    keys = ("name", "seed", "data", "masks", "model", "optim")
    out = {k: OmegaConf.select(cfg, k) for k in keys}
    out = {
        k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in out.items()
    }
    out["trainer"] = {k: cfg.trainer.get(k) for k in ("max_epochs", "max_time", "accelerator", "precision")}
    out["callbacks"] = sorted(cfg.get("callbacks") or {})
    out |= {k: stored[k] for k in ("model", "masks") if k in stored}
    where = (
        f"`conf/experiment/{meta['experiment']}.yaml` composed at this commit (the JSON predates "
        "`training_config`), with the model and masks config stored in the JSON"
    )
    return out, where


def center_share(m: dict[str, Any]) -> float:
    """The share of ``FreeForm`` samples that are the centre hole (``center_probability``; 0 when not recorded)."""
    p = m.get("center_probability")
    return float(p) if isinstance(p, int | float) and p > 0 else 0.0


def center_side(size: Any) -> Any:
    """The side of ``FreeForm``'s centre hole at ``size`` px: ``CenterMask(size, size // 2, size // 32)``'s hidden
    square (56 at 128)."""
    return size // 2 - 2 * max(1, size // 32) if isinstance(size, int) else "?"


def masks_text(m: dict[str, Any]) -> str:
    kind = short(m.get("_target_"))
    size = m.get("image_size")
    if kind == "CenterMask":
        side = m["target_size"] - 2 * m["overlap"]
        text = f"the centre hole: a {side}-px square in the middle of the {size}-px input (`CenterMask`)"
    elif kind == "FreeForm":
        text = (
            f"free-form strokes and blobs hiding {m['min_coverage']:.0%} to {m['max_coverage']:.0%} of the "
            f"{size}-px input"
        )
        share = center_share(m)
        if share:
            text += (
                f", and the centre {center_side(size)}-px hole in {share:.0%} of the samples (`FreeForm`, "
                "`center_probability`)"
            )
        else:
            text += " (`FreeForm`)"
    else:
        text = f"`{kind}` masks on the {size}-px input"
    if m.get("fill") and m["fill"] != "mean":
        text += f"; the hole is first filled by OpenCV {FILLS.get(m['fill'], m['fill'])}"
    return text


def purpose_text(m: dict[str, Any]) -> str:
    """What the model is for, from the holes it was trained on."""
    kind = short(m.get("_target_"))
    if kind == "CenterMask":
        side = m["target_size"] - 2 * m["overlap"]
        return f"the centre hole (a {side}-px square in the middle of a {m['image_size']}-px window)"
    if kind == "FreeForm":
        if center_share(m):
            size = m.get("image_size")
            return (
                "holes of any shape (brush strokes and blobs) and the centre hole (a "
                f"{center_side(size)}-px square in the middle of a {size}-px window)"
            )
        return "holes of any shape (brush strokes and blobs)"
    return f"the holes of `{kind}`"


def purpose_title(m: dict[str, Any]) -> str:
    """The card's heading: the kind of hole the model is for."""
    kind = short(m.get("_target_"))
    title = PURPOSE.get(kind, kind)
    return f"{title} and the centre hole" if kind == "FreeForm" and center_share(m) else title


def model_text(cfg: dict[str, Any]) -> list[str]:
    """Bullets of the method, every figure from the config."""
    model, masks = cfg.get("model") or {}, cfg.get("masks") or {}
    enc, dec, disc = model.get("encoder") or {}, model.get("decoder") or {}, model.get("discriminator") or {}
    channels = enc.get("in_channels")
    inputs = f"{channels} input channels: " + ("RGB + the mask" if model.get("mask_channel") else "RGB")
    whole = bool(model.get("residual") or model.get("skips") or masks.get("whole_image"))
    out = "the whole image" if whole else "the centre square"
    lines = [
        f"- **Generator**: `{short(enc.get('_target_'))}` encoder (width {enc.get('width')}, {inputs}) → "
        f"`{short((model.get('bottleneck') or {}).get('_target_'))}` bottleneck → `{short(dec.get('_target_'))}` "
        f"(width {dec.get('width')})"
        + (", U-Net skips" if model.get("skips") else "")
        + f"; predicts {out}"
        + (", as a correction added to the classical fill (residual)" if model.get("residual") else "")
        + "; only the hole's pixels are pasted back.",
        f"- **Holes trained on**: {masks_text(masks)}.",
    ]
    lam = model.get("lambda_rec")
    if isinstance(lam, int | float):
        loss = f"{model.get('rec_loss', '?').upper()} reconstruction × {lam:g} + adversarial × {1 - lam:.3g}"
        if model.get("ssim_weight"):
            loss += f", SSIM term × {model['ssim_weight']:g}"
        loss += f" (`{short(disc.get('_target_'))}` width {disc.get('width')})"
        lines.append(f"- **Loss**: {loss}.")
    optim, data, trainer = cfg.get("optim") or {}, cfg.get("data") or {}, cfg.get("trainer") or {}
    g = optim.get("generator") or {}
    if g:
        budget = f"`max_time` {trainer.get('max_time')}" if trainer.get("max_time") else "no time budget"
        if "budget_cosine" in (cfg.get("callbacks") or []):
            budget += ", cosine learning rate over that budget (`BudgetCosineLR`)"
        lines.append(
            f"- **Optimiser**: `{short(g.get('_target_'))}` lr {g.get('lr')}, betas {tuple(g.get('betas') or ())}; "
            f"batch {data.get('batch_size')}, {data.get('samples_per_epoch')} random {data.get('input_size')}-px "
            f"crops per epoch (photos' short side {data.get('short_side')}), seed {cfg.get('seed')}; {budget}."
        )
    return lines


# ---- the sections of a card ------------------------------------------------------------------------------------


def data_lines(meta: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    d = meta.get("data")
    if isinstance(d, dict):
        lines = [f"- Source `data.source={d.get('source')}`: {esc(d.get('attribution'))}"]
        if "train_photos" in d:
            lines.append(
                f"- {d['train_photos']} training photos ({d.get('campus_photos')} campus + "
                f"{len(d.get('extra_photos') or [])} other scenes); {d.get('validation_photos')} validation photos "
                f"(`{d.get('validation')}`)."
            )
        return lines
    source = (cfg.get("data") or {}).get("source")
    return [
        f"- Source `data.source={source}` (from the experiment's config): {esc(meta.get('data_attribution', 'no attribution recorded'))}",
        "- Photo counts: not recorded in the JSON (exported before `make weights` recorded them).",
    ]


def precision_text(precision: Any, bf16_native: Any) -> str:
    """``trainer.precision`` as run: ``auto`` is bf16-mixed on a machine with native bf16, else 32-true."""
    if precision == "auto" and isinstance(bf16_native, bool):
        return f"`auto` ({'bf16-mixed: native bf16' if bf16_native else '32-true: no native bf16'})"
    return f"`{precision}`"


def stage_text(earlier: dict[str, Any]) -> str:
    """An earlier training stage (a ``starts_from`` record of ``make weights``) in one clause."""
    what = f"{code('init_from=' + str(earlier.get('init_from')))}"
    if earlier.get("note") and not earlier.get("kind"):
        return f"{what} ({esc(earlier['note'])})"
    trained = earlier.get("trained") if isinstance(earlier.get("trained"), dict) else {}
    kind = earlier.get("kind") or "weights"
    exp = f" of `{earlier['experiment']}`" if earlier.get("experiment") else ""
    sha = f", sha256 `{str(earlier['sha256'])[:16]}`" if earlier.get("sha256") else ""
    step = trained.get("global_step", earlier.get("global_step"))
    facts = [f"{step:,} optimizer steps" if isinstance(step, int) else "steps not recorded"]
    facts.append(f"{duration(trained.get('train_seconds'))} of training")
    if isinstance(earlier.get("wall_time_s"), int | float):
        span = (
            f", from {earlier['started_at']} to {earlier['updated_at']}"
            if earlier.get("started_at") and earlier.get("updated_at")
            else ""
        )
        facts.append(f"fit wall time {duration(earlier['wall_time_s'])}{span}")
    if earlier.get("attempts"):
        facts.append(f"{earlier['attempts']} attempt{'' if earlier['attempts'] == 1 else 's'}")
    if earlier.get("precision"):
        facts.append(f"precision {precision_text(earlier['precision'], earlier.get('bf16_native'))}")
    text = f"{what}, a {esc(kind)}{exp}{sha}: {', '.join(facts)}"
    if earlier.get("machine"):
        text += f"; on {esc(earlier['machine'])}"
    if earlier.get("made_by"):
        text += f"; made by {code(earlier['made_by'])}"
    if earlier.get("note"):
        text += f" ({esc(earlier['note'])})"
    before = earlier.get("starts_from")
    if isinstance(before, dict) and before.get("init_from"):
        text += f"; that stage itself started from {code('init_from=' + str(before['init_from']))}"
    return text


def starts_from_lines(earlier: Any, seconds: Any) -> list[str]:
    """The Training section's **Starts from** item: the earlier stage, its commands, and the total time."""
    if not isinstance(earlier, dict):
        return []
    trained = earlier.get("trained") if isinstance(earlier.get("trained"), dict) else {}
    before = trained.get("train_seconds")
    total = (
        f"; {duration(seconds + before)} of training in all (this stage's {duration(seconds)} + the earlier "
        f"stage's {duration(before)})"
        if isinstance(seconds, int | float) and isinstance(before, int | float)
        else ""
    )
    commands = earlier.get("training_commands") or []
    lines = [
        f"- **Starts from**: {stage_text(earlier)}. The steps and time above are this stage's only{total}."
        + (" Its commands:" if commands else "")
    ]
    if commands:
        lines += ["", "    ```bash", *(f"    {c}" for c in commands), "    ```"]
    return lines


def training_lines(meta: dict[str, Any]) -> list[str]:
    trained, status = meta.get("trained") or {}, meta.get("run_status") or {}
    t = meta.get("training") or {}
    step = trained.get("global_step")
    same = status.get("global_step") == step
    epochs = (
        t.get("epochs_completed")
        if "training" in meta
        else (status.get("epochs_completed") if same else None)
    )
    epoch_text = (
        f"{epochs} epochs completed"
        if epochs is not None
        else f"epoch counter {trained.get('epoch')} at the save"
    )
    machine = status.get("machine") or {}
    m_text = meta.get("machine") or "not recorded"
    if machine and "torch thread" not in m_text:
        m_text += (
            f"; {machine.get('torch_threads')} torch threads, {machine.get('platform')} (`run_status.json`)"
        )
    precision = ((meta.get("training_config") or {}).get("trainer") or {}).get("precision")
    precision_line = (
        [f"- **Precision**: {precision_text(precision, machine.get('bf16_native'))}."] if precision else []
    )
    lines = [
        f"- **Steps**: {step:,} optimizer steps (Lightning's `global_step`), {epoch_text}."
        if isinstance(step, int)
        else "- **Steps**: not recorded.",
        f"- **Time**: {duration(trained.get('train_seconds'))} of training (the checkpoint's Timer, all attempts); "
        f"fit wall time {duration(status.get('wall_time_s'))} (`run_status.json`), from {status.get('started_at')} "
        f"to {status.get('updated_at')}.",
    ]
    lines += starts_from_lines(meta.get("starts_from"), trained.get("train_seconds"))
    lines += [
        f"- **Attempts**: {status.get('attempts', 'not recorded')} (run status `{status.get('status')}`).",
        f"- **Machine**: {esc(m_text)}.",
        *precision_line,
    ]
    if status and not same:
        lines.append(
            f"- **Note**: `run_status.json` was at step {status.get('global_step')} when this checkpoint (step "
            f"{step}) was exported: the run was still going."
        )
    commands = meta.get("training_commands") or [meta.get("training_command", "not recorded")]
    label = "Commands" if len(commands) > 1 else "Command"
    lines += [f"- **{label}** (made by {code(meta.get('made_by'))}):", ""]
    lines += ["    ```bash", *(f"    {c}" for c in commands), "    ```"]
    return lines


def quality_lines(name: str, meta: dict[str, Any], results: dict[str, Any] | None, where: Path) -> list[str]:
    head = ["### Quality against OpenCV", ""]
    if results is None:
        return head + [
            f"Not measured yet: run `make quality-shipped` (it writes `{shown(where)}/RESULTS.md` and "
            "`results.json`, then these cards).",
            "",
        ]
    trained = meta.get("trained") or {}
    sections = [s for s in results.get("sections", []) if s["model"] == name]
    if not sections:
        return head + [f"Not measured yet: `{shown(where)}/results.json` has no `{name}` section.", ""]
    stale = [
        s
        for s in sections
        if (s.get("trained") or {}).get("global_step") != trained.get("global_step")
        or s.get("model_name") != meta.get("experiment")
    ]
    if stale:
        s = stale[0]
        return head + [
            f"Not measured for these weights: `{shown(where)}/results.json` scored `{s.get('model_name')}` at step "
            f"{(s.get('trained') or {}).get('global_step')} (these weights: `{meta.get('experiment')}`, step "
            f"{trained.get('global_step')}); run `make quality-shipped`.",
            "",
        ]
    bar = results.get("bar") or {}
    sets = (bar.get("sets") or {}).get(name)
    lines = head + [
        f"`make quality-shipped` (`{shown(where)}/RESULTS.md`): the model against OpenCV Telea and Navier-Stokes on "
        "the same crops and masks. The bar: on every mask set and hole-area bin, PSNR of the hole at least "
        f"+{bar.get('min_margin_db', float('nan')):.2f} dB above the better fill, and SSIM of the whole image above "
        f"the better fill's; this model is judged on "
        + (
            "every mask set"
            if sets == "all"
            else "the " + ", ".join(f"`{x}`" for x in sets or []) + " mask set"
        )
        + ". "
        "Margins: model minus the better fill, paired bootstrap 95% interval over crops.",
        "",
        "| images | mask set | crops | model PSNR (dB) | better fill | margin (dB) [95%] | SSIM whole: model / fill "
        "| hole-area bins met | bar |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    met = total = 0
    for s in sections:
        rows = s["rows"]
        for r in rows:
            if r["in_bar"]:
                total += 1
                met += bool(r["met"])
        for r in (r for r in rows if r["hole_area"].startswith("all")):
            bins = [
                b for b in rows if b["mask_set"] == r["mask_set"] and not b["hole_area"].startswith("all")
            ]
            if bins:
                bins_text = f"{sum(bool(b['met']) for b in bins)} of {len(bins)}" if r["in_bar"] else "-"
            else:
                bins_text = f"one bin ({r['hole_area'].split('= ')[-1]})"
            fill, sfill = r["better_fill_psnr"], r["better_fill_ssim_whole"]
            lo, hi = r["margin_ci95"]
            verdict = "(not in the bar)" if not r["in_bar"] else ("**met**" if r["met"] else "not met")
            lines.append(
                f"| {s['image_set']} | {r['mask_set']} | {r['n']} | {r['psnr']['model']:.2f} | "
                f"{FILLS.get(fill, fill)} {r['psnr'][fill]:.2f} | {r['margin_db']:+.2f} [{lo:+.2f}, {hi:+.2f}] | "
                f"{r['ssim_whole']['model']:.4f} / {r['ssim_whole'][sfill]:.4f} ({FILLS.get(sfill, sfill)}) | "
                f"{bins_text} | {verdict} |"
            )
    crops = sorted({(s["crops_per_image"], s["short_side"], s["seed"]) for s in sections})
    lines += [
        "",
        f"Bar rows met (every mask set and bin): **{met} of {total}**"
        + ("" if met < total or not total else ", all of them")
        + ". Crops: "
        + "; ".join(f"{c} per photo, short side {ss}, seed {sd}" for c, ss, sd in crops)
        + "; "
        + ", ".join(f"{s['image_set']} {s['image_files']} photos" for s in sections)
        + ".",
        "",
    ]
    ns = results.get("center_vs_ns_cross")
    if name == "center" and ns:
        p, q = ns["psnr"], ns["ssim_whole"]
        lines += [
            f"Against Navier-Stokes on the cross-source centre hole ({p['n']} crops): PSNR of the hole "
            f"{p['mean']:+.2f} dB [{p['lo']:+.2f}, {p['hi']:+.2f}], SSIM of the whole image {q['mean']:+.4f} "
            f"[{q['lo']:+.4f}, {q['hi']:+.4f}]: {'ahead' if ns['ahead'] else 'not ahead'}.",
            "",
        ]
    return lines


def latency_lines(name: str, meta: dict[str, Any], latency: dict[str, Any] | None, path: Path) -> list[str]:
    head = ["### Inference latency", ""]
    if latency is None:
        return head + [f"Not measured yet: run `make quality-latency` (it writes `{shown(path)}`).", ""]
    files = latency.get("files") or {}
    which = next(
        (
            w
            for w in ("after", "before")
            if (files.get(w) or {}).get(name, {}).get("sha256") == meta["sha256"][:16]
        ),
        None,
    )
    rows = [r for r in latency.get("rows", []) if r["model"] == name]
    if which is None or not rows:
        return head + [
            f"Not measured for these weights: `{shown(path)}` timed other `{name}` weights; run "
            "`make quality-latency`.",
            "",
        ]
    m = latency.get("machine") or {}
    lines = head + [
        f"`Inpainter.predict` on {latency.get('photo')}, the hole `{rows[0]['mask_set']}` scaled up; median of "
        f"{latency.get('repeats')} calls after {latency.get('warmup')} warm-up (`make quality-latency`, "
        f"`{shown(path)}`, these weights as its '{which}' set), on {m.get('cpu')} ({m.get('cpu_count')} CPUs, "
        f"{m.get('torch_threads')} torch threads{', ' + m['gpu'] if m.get('gpu') else ''}), device "
        f"{latency.get('device')}, torch {m.get('torch')}.",
        "",
        "| photo | hole % | median (ms) |",
        "|---|---|---|",
    ]
    lines += [
        f"| {r['size']}x{r['size']} px | {100 * r['hole_fraction']:.0f} | {r[which + '_ms']:.1f} |"
        for r in rows
    ]
    return lines + [""]


def licence_lines(meta: dict[str, Any]) -> list[str]:
    project = importlib.metadata.metadata("ctx-inpaint")  # pyproject.toml's, as installed
    lic = project.get("License-Expression") or project.get("License") or "not recorded"
    d = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    data = (
        f"{d['package']}, {d['licence']} licence, {d['author']}"
        if d.get("package")
        else meta.get("data_attribution", "not recorded").rstrip(".")
    )
    return [
        "### Licences",
        "",
        f"- **Weights and code**: the `{project['Name']}` package's licence, {lic} (`pyproject.toml`).",
        f"- **Training photos**: {esc(data)}; the weights' JSON repeats the attribution.",
        "- **Evaluation photos**: the places and cross-source hold-outs, used for scoring only, each photo under "
        "its own licence ([Data and licences](data.md#licences-and-attribution)).",
        "",
    ]


def card(
    name: str, pretrained: Path, results: dict | None, results_dir: Path, latency: dict | None, lat_path: Path
) -> list[str]:
    weights = pretrained / f"{name}.safetensors"
    meta = read_json(weights.with_suffix(".json"))
    if meta is None or not weights.is_file():
        return [
            f"## `{name}`",
            "",
            f"Not exported yet: `{shown(weights)}` or its JSON is missing (`make weights`).",
            "",
        ]
    cfg, cfg_source = config_of(meta)
    f16 = meta.get("float16_check") or {}
    lines = [
        f"## `{name}`: {purpose_title(cfg.get('masks') or {})}",
        "",
        f"For {purpose_text(cfg.get('masks') or {})} in photos of any size: each hole is filled from a window "
        f'around it. Load it with `Inpainter.load("{name}")` or `python -m ctx_inpaint.inpaint -c {name}`.',
        "",
        "| | |",
        "|---|---|",
        f"| file | `{shown(weights)}` + `.json`, {weights.stat().st_size / 2**20:.2f} MiB, {meta.get('dtype')}, "
        f"sha256 `{meta['sha256'][:16]}` |",
        f"| parameters | {meta['parameters']:,} (the generator) |",
        f"| experiment | `{meta.get('experiment')}` (`conf/experiment/{meta.get('experiment')}.yaml`) |",
    ]
    if f16:
        crops = f", {f16['crops']} crops of {f16['images']}" if "crops" in f16 else ""
        lines.append(
            f"| float16 cost | PSNR {f16['psnr_float32']:.4f} → {f16['psnr_float16']:.4f} dB, SSIM "
            f"{f16['ssim_float32']:.5f} → {f16['ssim_float16']:.5f} (float32 checkpoint → float16 file, the "
            f"run's validation masks{crops}) |"
        )
    lines += ["", "### Method", "", *model_text(cfg), f"- Config: {cfg_source}.", ""]
    lines += ["### Data", "", *data_lines(meta, cfg), ""]
    lines += ["### Training", "", *training_lines(meta), ""]
    lines += quality_lines(name, meta, results, results_dir)
    lines += latency_lines(name, meta, latency, lat_path)
    lines += licence_lines(meta)
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pretrained", type=Path, default=PRETRAINED_DIR, help="the .safetensors + .json files")
    p.add_argument("--results", type=Path, default=HERE, help="make quality-shipped's folder (results.json)")
    p.add_argument(
        "--latency", type=Path, default=HERE / "latency.json", help="make quality-latency's record"
    )
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "models.md")
    args = p.parse_args(argv)
    results = read_json(args.results / "results.json")
    latency = read_json(args.latency)
    out = [
        "<!-- generated by make model-cards (experiments/quality/shipped/model_cards.py); do not edit -->",
        "",
        "# Model cards",
        "",
        f"One card per shipped model (`{shown(args.pretrained)}/`; [Inpainting your photos](inpainting.md) shows how "
        "to use them), written by `make model-cards` from the records alone: each model's JSON (`make weights`), "
        f"`{shown(args.results)}/results.json` (`make quality-shipped`) and `{shown(args.latency)}` "
        "(`make quality-latency`). What a record does not hold is said, not filled in.",
        "",
    ]
    for name in PRETRAINED:
        out += card(name, args.pretrained, results, args.results, latency, args.latency)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(out).rstrip("\n") + "\n")
    print(f"wrote {args.out}: {', '.join(PRETRAINED)}")


if __name__ == "__main__":
    main()
