"""Composing the configs: where ``conf/`` is, its groups' options, a config composed as the CLI would, and the
one-line refusal of a command line Hydra would reject (building from a config is ``config.build``'s).

Every CLI and test finds the configs here. In a checkout or an editable install they are ``conf/`` at the
repository root; a wheel carries the same files as ``ctx_inpaint/conf`` (pyproject maps them in at build time).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
from pathlib import Path
from typing import Any, NoReturn

from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser  # what hydra.main reads argv with: the same reading
from hydra.core.global_hydra import GlobalHydra
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, ValueType
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

_PACKAGE = Path(__file__).resolve().parents[1]  # ctx_inpaint/
CONFIG_DIR = str(_PACKAGE / "conf" if (_PACKAGE / "conf").is_dir() else _PACKAGE.parent / "conf")

if not OmegaConf.has_resolver("pid"):
    # Cached: resolved once in the launching process, so parallel sweep jobs (joblib workers) share its sweep dir.
    OmegaConf.register_new_resolver("pid", lambda: os.getpid(), use_cache=True)


def group_options(key: str) -> list[str]:
    """The config files a key's group offers (``model.encoder`` -> conf/model/encoder/*.yaml)."""
    folder = Path(CONFIG_DIR).joinpath(*key.split("."))
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def compose_config(overrides: list[str] = (), output_dir: str | Path | None = None) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides`` as the CLI would (without starting a run); with
    ``output_dir``, ``paths.output_dir`` points there (the CLI sets it from ``hydra.run.dir``)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="train", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg


# ---- the command line, before Hydra starts ----------------------------------------------------------------------
# Hydra flags after which the command line is Hydra's to judge: help, information, other config sources.
_HYDRA_DECIDES = (
    "help",
    "hydra_help",
    "info",
    "shell_completion",
    "config_path",
    "config_dir",
    "experimental_rerun",
)


def override_problem(argv: list[str], config_name: str = "train") -> str | None:
    """The one-line error for a command line Hydra would refuse with a multi-line report, else None.

    Every Hydra command (train, prepare, bench) calls this before ``hydra.main``, so a refused command writes
    nothing: an override Hydra cannot parse, a choice a config group (``conf/*/``, nested ones such as
    ``model/encoder``, Hydra's own such as ``hydra/launcher``) does not offer, a key the config lacks (``foo=1``
    without ``+``), a group not in the defaults list, ``+`` on a key that exists, ``~`` on one that does not.
    The config is composed once as Hydra will (in a multirun with each sweep's first value; every sweep value of
    a group is checked). ``HYDRA_FULL_ERROR=1`` leaves every error to Hydra, reported in full."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1" or "--version" in argv:
        return None
    args = _hydra_args(argv)
    if args is None or any(getattr(args, flag, None) for flag in _HYDRA_DECIDES):
        return None
    try:
        parsed = OverridesParser.create().parse_overrides(list(args.overrides))
    except OverrideParseException as err:
        lines = [line.strip() for line in err.message.splitlines() if line.strip()]
        why = "; ".join(line for line in lines if not line.startswith("See "))
        return (
            f"{err.override}: Hydra cannot parse it ({why}); expected key=value, see "
            "https://hydra.cc/docs/advanced/override_grammar/basic"
        )
    if any(o.key_or_group.startswith("hydra.searchpath") for o in parsed):
        return None  # configs may come from elsewhere: Hydra decides
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            return (
                _group_problem(parsed, loader)
                or _sweep_problem(parsed, bool(args.multirun))
                or _compose_problem(args.config_name or config_name, parsed, bool(args.multirun))
            )
    finally:
        GlobalHydra.instance().clear()


def _raise(message: str) -> NoReturn:
    raise ValueError(message)


def _hydra_args(argv: list[str]) -> argparse.Namespace | None:
    """Hydra's own reading of the command line; None where it would refuse it (Hydra then says why)."""
    parser = get_args_parser()
    parser.error = _raise  # type: ignore[method-assign]  # argparse would print usage and exit
    try:
        return parser.parse_known_args(argv)[0]
    except (ValueError, SystemExit):
        return None


def _names(override: Override) -> list[str]:
    """The config names a group override chooses (each value of a sweep); [] for null, globs and deletions."""
    if override.is_delete() or override.is_interval_sweep():
        return []
    if override.is_sweep_override():
        if override.value_type == ValueType.GLOB_CHOICE_SWEEP:
            return []
        return [str(v) for v in override.sweep_string_iterator()]
    value = override.value()
    if value is None or isinstance(value, dict):
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _group_problem(parsed: list[Override], loader: Any) -> str | None:
    for override in parsed:
        group = override.key_or_group
        if not loader.repository.group_exists(group):
            as_group = group.replace(".", "/")
            names = [] if "." not in group or override.is_delete() else _names(override)
            if names and loader.repository.group_exists(as_group) and isinstance(override.value(), str):
                return (
                    f"{group}: got {names[0]!r}, which would replace that config with a string; choose a config "
                    f"of the group with {as_group}={names[0]} (or set a value inside it: {group}.KEY=VALUE)"
                )
            continue
        if not override.is_delete() and not override.is_sweep_override() and override.value() is None:
            options = loader.get_group_options(group, results_filter=ObjectType.CONFIG)
            return f"{group}: got null; expected one of {', '.join(options)} (or ~{group} to leave the group out)"
        unknown = [
            name for name in _names(override) if not loader.repository.config_exists(f"{group}/{name}")
        ]
        if unknown:
            options = loader.get_group_options(group, results_filter=ObjectType.CONFIG)
            return f"{group}: got {', '.join(unknown)}; expected one of {', '.join(options)}"
    return None


def _sweep_problem(parsed: list[Override], multirun: bool) -> str | None:
    for override in parsed:
        if not override.is_sweep_override():
            continue
        if not multirun:
            return (
                f"{override.input_line}: several values need --multirun (-m) to sweep them; for a list write "
                f"{override.key_or_group}=[...], for a string with commas quote it"
            )
        if override.is_hydra_override():
            return f"{override.input_line}: Hydra's own settings cannot be swept; give one value"
    return None


def _one_job(parsed: list[Override]) -> list[str]:
    """The overrides of a multirun's first job: each sweep at its first value (intervals left out)."""
    lines = []
    for override in parsed:
        if not override.is_sweep_override():
            lines.append(str(override.input_line))
        elif override.is_discrete_sweep() and override.value_type != ValueType.GLOB_CHOICE_SWEEP:
            first = next(iter(override.sweep_string_iterator()), None)
            if first is not None:
                lines.append(f"{override.get_key_element()}={first}")
    return lines


def _compose_problem(config_name: str, parsed: list[Override], multirun: bool) -> str | None:
    lines = _one_job(parsed) if multirun else [str(o.input_line) for o in parsed]
    try:
        compose(config_name=config_name, overrides=lines)
    except (HydraException, OmegaConfBaseException) as err:
        return _composition_message(err, config_name, lines, parsed)
    return None


def _composition_message(
    err: BaseException, config_name: str, lines: list[str], parsed: list[Override]
) -> str:
    """Hydra's composition error as one line that names the key or group first."""
    text = str(err).split("Config search path:")[0]
    flat = " ".join(text.split())
    typed = {
        o.key_or_group: str(o.input_line).lstrip("+~") for o in parsed
    }  # as typed (a sweep, not its first)
    if m := re.match(r"Could not override '([^']+)'\. To append to your config use \+(\S+)", flat):
        key, line = m.groups()
        near = _near_keys(key, config_name, [x for x in lines if x.lstrip("+~") != line])
        hint = f" (did you mean {' or '.join(near)}?)" if near else ""
        return f"{key}: not a key of the config{hint}; use +{typed.get(key, line)} to add it"
    if m := re.search(r"Could not override '([^']+)'\. Did you mean to override (.+?)\?", flat):
        return f"{m.group(1)}: not in the defaults list; did you mean {m.group(2)}?"
    if m := re.search(
        r"Could not override '([^']+)'\. No match in the defaults list\.(?: .*? use \+(\S+))?", flat
    ):
        key, line = m.groups()
        line = typed.get(key, line or f"{key}=...")
        return f"{key}: not in the defaults list, so it cannot be overridden; use +{line} to add it"
    if m := re.match(r"Could not delete from config\. '([^']+)' does not exist", flat):
        return f"{m.group(1)}: not in the config, so ~{m.group(1)} has nothing to delete"
    if m := re.match(r"Could not append to config\. An item is already at '([^']+)'", flat):
        key = m.group(1)
        return f"{key}: already in the config; use {key}=VALUE to change it (or ++{key}=VALUE)"
    if m := re.match(r"Error merging override (\S+)", flat):
        cause = err.__cause__
        return f"{m.group(1)}: {' '.join(str(cause).split()) if cause else flat}"
    cause = err.__cause__
    if isinstance(cause, OmegaConfBaseException) and str(cause).strip():
        flat += f" ({' '.join(str(cause).split())})"
    return flat or type(err).__name__


def _near_keys(key: str, config_name: str, lines: list[str]) -> list[str]:
    """Keys of the config spelled like ``key`` (for a typo), from a compose without the failing override."""
    try:
        cfg = compose(config_name=config_name, overrides=lines)
    except (HydraException, OmegaConfBaseException):
        return []
    keys: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        for name in node.keys() if OmegaConf.is_dict(node) else []:
            full = f"{prefix}{name}"
            keys.append(full)
            child = node._get_node(name)
            if OmegaConf.is_dict(child):
                walk(child, f"{full}.")

    walk(cfg, "")
    return difflib.get_close_matches(key, keys, n=2, cutoff=0.75)
