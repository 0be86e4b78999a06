"""What one competing busy process costs training, for each thread policy (``ctx_inpaint.common.threads``).

:func:`run_contention` times ``steps`` bare-loop training steps (the bench's own: ``measure.plain_parts``,
``measure.gan_step_fn``, after ``warmup`` untimed ones) in a fresh child process per measurement, since libgomp
reads the policy's variables once, when torch loads. Each child runs with exactly its policy's variables (the
thread variables of this process's environment are removed), either alone (``quiet``) or beside one
``python -c 'while 1: pass'`` (``busy``) that this module starts just before the child and kills when the child
ends, whatever happens. The measurements are interleaved: every round runs every policy, the policies' order
rotated round by round (``timing.round_order``) and the conditions alternated (quiet first in even rounds, busy
first in odd ones), so a slow drift of the machine lands on every policy alike.

Per policy it reports the medians of the quiet and busy seconds, ``busy_over_quiet`` (the median of the per-round
ratios, with spread and count, as every bench ratio) and ``quiet_loss`` (its quiet time over the ``spin`` policy's
quiet time in the same round, minus 1), and recommends the default: the lowest ``busy_over_quiet`` among the
policies whose ``quiet_loss`` is at most ``max_quiet_loss`` (5%). The target is ``busy_over_quiet <= 1.5``.

The process runner, the busy-process starter and the clock are arguments: the tests drive the logic with fakes.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from ctx_inpaint.benchmark.measure import data_rate, device_of, gan_step_fn, plain_parts
from ctx_inpaint.benchmark.timing import Clock, put_ratio, ratio, round_order, synchronize
from ctx_inpaint.common.allocator import keep_freed_memory
from ctx_inpaint.common.threads import CHOICES, DEFAULT_POLICY, POLICIES, POLICY_ENV, THREAD_VARS
from ctx_inpaint.errors import ConfigError

CONDITIONS = ("quiet", "busy")
REFERENCE = "spin"  # torch's default: the quiet time every policy's loss is measured against
BUSY_CODE = "while 1: pass"
# The child applies its policy as a command does (``auto`` looks at the machine then), before torch loads.
CHILD_CODE = (
    "import sys; import ctx_inpaint.common.startup; "
    "from ctx_inpaint.benchmark.contention import child_main; child_main(sys.argv[1:])"
)
RESULT_MARK = "ctx-inpaint-contention: "  # the child's result line, among whatever else it prints
KEY = "bench.contention"

# A runner: (argv, env, timeout in s) -> the child's stdout; raises when the child fails.
Runner = Callable[[Sequence[str], Mapping[str, str], float], str]
# A busy-process starter: a context manager that keeps one busy process running while it is open.
BusyStarter = Callable[[], AbstractContextManager[object]]


@dataclass(frozen=True)
class Settings:
    """``bench.contention``: what is measured, how often, and the rule the recommendation follows."""

    policies: tuple[str, ...] = CHOICES
    steps: int = 120  # timed training steps per child
    warmup: int = 2  # untimed steps first (optimizer state, allocator, oneDNN kernel choice)
    rounds: int = 3
    conditions: tuple[str, ...] = CONDITIONS
    batch_size: int | None = None  # None: the training batch (data.batch_size)
    timeout_s: float = 1800.0  # per child: stops a hang only
    max_quiet_loss: float = 0.05  # what a policy may cost on a quiet machine, against spin
    target: float = 1.5  # busy/quiet wanted at most


class ChildFailed(RuntimeError):
    """A measuring child exited with an error (a bug or a broken environment, not a user error)."""


def settings_from(cfg: DictConfig, **overrides: Any) -> Settings:
    """``cfg.bench.contention`` (absent keys: :class:`Settings`' defaults), then ``overrides``, checked: a
    ``ConfigError`` names the key for a value that cannot be used."""
    node = OmegaConf.select(cfg, KEY, default=None)
    given = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    if not isinstance(given, dict):
        raise ConfigError(f"{KEY}: expected a mapping, got {given!r}")
    given |= {k: v for k, v in overrides.items() if v is not None}
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(f"{KEY}: unknown {unknown}; expected some of {sorted(known)}")
    for name in ("policies", "conditions"):
        if name in given:
            given[name] = _names(name, given[name], CHOICES if name == "policies" else CONDITIONS)
    for name, low in (("steps", 1), ("warmup", 0), ("rounds", 1), ("batch_size", 1)):
        value = given.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ConfigError(f"{KEY}.{name}: got {value!r}; expected an integer >= {low}")
    for name, positive in (("timeout_s", True), ("max_quiet_loss", False), ("target", True)):
        value = given.get(name)
        number = not isinstance(value, bool) and isinstance(value, int | float)
        if value is not None and not (number and (value > 0 if positive else value >= 0)):
            raise ConfigError(f"{KEY}.{name}: got {value!r}; expected a number {'>' if positive else '>='} 0")
    return Settings(**given)


def _names(name: str, value: Any, choices: Sequence[str]) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value) if isinstance(value, list | tuple) else None
    if not items or any(v not in choices for v in items) or len(set(items)) < len(items):
        raise ConfigError(
            f"{KEY}.{name}: got {value!r}; expected a list of distinct names from {', '.join(choices)}"
        )
    return tuple(items)


# ---- the parent: the schedule, the children, the busy process ------------------------------------------------
def schedule(policies: Sequence[str], rounds: int, conditions: Sequence[str]) -> list[list[tuple[str, str]]]:
    """Every round's (policy, condition) pairs in the order they run: the policies rotated by the round
    (``round_order``), each policy's conditions in their given order in even rounds and reversed in odd ones."""
    out = []
    for r in range(rounds):
        conds = list(conditions) if r % 2 == 0 else list(reversed(conditions))
        out.append([(p, c) for p in round_order(list(policies), r) for c in conds])
    return out


def run_child(argv: Sequence[str], env: Mapping[str, str], timeout: float) -> str:
    """The real runner: ``argv`` in a subprocess with exactly ``env``; its stdout, or :class:`ChildFailed` with the
    end of its stderr. A child past ``timeout`` is killed (``subprocess.TimeoutExpired``)."""
    done = subprocess.run(list(argv), env=dict(env), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise ChildFailed(f"contention child exited with status {done.returncode}:\n{tail}")
    return done.stdout


@contextmanager
def busy_process() -> Iterator[subprocess.Popen]:
    """One ``python -c 'while 1: pass'`` for as long as the block runs; killed (and reaped) when it ends, also
    on an error or Ctrl-C."""
    proc = subprocess.Popen(
        [sys.executable, "-c", BUSY_CODE],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def child_env(policy: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (``os.environ``) without any thread variable, plus exactly ``policy``'s variables and its name;
    this package first on ``PYTHONPATH``, so the child runs the code the parent runs."""
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items() if k not in THREAD_VARS and k != POLICY_ENV}
    env |= dict(POLICIES.get(policy, {}))  # auto: chosen by the child itself, at its start
    env[POLICY_ENV] = policy
    root = str(Path(__file__).resolve().parents[2])  # the folder that holds ctx_inpaint/
    env["PYTHONPATH"] = os.pathsep.join([root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env


def child_argv(config: Path, steps: int, warmup: int, batch_size: int) -> list[str]:
    return [sys.executable, "-c", CHILD_CODE, str(config), str(steps), str(warmup), str(batch_size)]


def write_child_config(cfg: DictConfig, folder: Path) -> Path:
    """``cfg`` resolved into ``folder/config.yaml`` for the children (``paths.output_dir``, which only a Hydra run
    can resolve, points at ``folder``; the children write nothing)."""
    conf = cfg.copy()
    with open_dict(conf):
        if OmegaConf.select(conf, "paths") is not None:
            conf.paths.output_dir = str(folder)
    path = Path(folder) / "config.yaml"
    OmegaConf.save(conf, path, resolve=True)
    return path


def parse_child(stdout: str) -> dict[str, Any]:
    """The child's result: its last line that starts with :data:`RESULT_MARK`."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    raise ChildFailed(f"contention child printed no result line; its output ended: {stdout[-500:]!r}")


def _say(message: str) -> None:
    print(f"[ctx-inpaint] {message}", file=sys.stderr, flush=True)


def run_contention(
    cfg: DictConfig,
    *,
    runner: Runner = run_child,
    busy: BusyStarter = busy_process,
    clock: Clock = time.perf_counter,
    log: Callable[[str], None] = _say,
    **overrides: Any,
) -> dict[str, Any]:
    """Measure every policy quiet and busy (see the module docstring) under ``cfg`` (``cfg.bench.contention``,
    then ``overrides``: any :class:`Settings` field); the JSON-serialisable record, its ``recommended`` policy
    included. One progress line per child goes to ``log``."""
    s = settings_from(cfg, **overrides)
    batch_size = int(s.batch_size or cfg.data.batch_size)
    order = schedule(s.policies, s.rounds, s.conditions)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ctx_inpaint_contention_") as tmp:
        argv = child_argv(write_child_config(cfg, Path(tmp)), s.steps, s.warmup, batch_size)
        for r, this in enumerate(order):
            for policy, condition in this:
                with busy() if condition == "busy" else nullcontext():
                    t0 = clock()
                    out = runner(argv, child_env(policy), float(s.timeout_s))
                    process_s = clock() - t0
                child = parse_child(out)
                runs.append(
                    {"round": r, "policy": policy, "condition": condition, "process_s": process_s, **child}
                )
                log(
                    f"contention round {r + 1}/{s.rounds}: {policy} {condition}: {s.steps} steps in "
                    f"{child['seconds']:.2f} s ({child['threads']} threads)"
                )
    result = summarize(runs, s, order)
    result["batch_size"] = batch_size
    return result


# ---- the figures ---------------------------------------------------------------------------------------------
def summarize(
    runs: Sequence[Mapping[str, Any]], s: Settings, order: list[list[tuple[str, str]]]
) -> dict[str, Any]:
    """The record: settings, every run, and per policy the medians, ``busy_over_quiet``, ``quiet_loss``, whether
    it meets the target, then the recommendation (:func:`recommend`)."""
    seconds: dict[str, list[float]] = {}
    for run in sorted(runs, key=lambda x: x["round"]):
        seconds.setdefault(f"{run['policy']}/{run['condition']}", []).append(float(run["seconds"]))
    timer = {"seconds": seconds}
    by_policy: dict[str, dict[str, Any]] = {}
    for p in s.policies:
        mine = [run for run in runs if run["policy"] == p]
        entry: dict[str, Any] = {
            "env": dict(POLICIES.get(p, {})),  # auto: what each child chose is in its run's env
            "threads": mine[0].get("threads") if mine else None,
        }
        for c in s.conditions:
            entry[f"{c}_s"] = statistics.median(seconds[f"{p}/{c}"])
        if set(CONDITIONS) <= set(s.conditions):
            put_ratio(entry, "busy_over_quiet", ratio(timer, f"{p}/busy", f"{p}/quiet"))
        if "quiet" in s.conditions and REFERENCE in s.policies:
            loss = ratio(timer, f"{p}/quiet", f"{REFERENCE}/quiet", transform=lambda x: x - 1.0)
            put_ratio(entry, "quiet_loss", loss)
        if "busy_over_quiet" in entry and "quiet_loss" in entry:
            entry["meets_target"] = (
                entry["busy_over_quiet"] <= s.target and entry["quiet_loss"] <= s.max_quiet_loss
            )
        by_policy[p] = entry
    recommended, why = recommend(by_policy, s)
    return {
        **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(s).items()},
        "busy_command": f"{Path(sys.executable).name} -c '{BUSY_CODE}'",
        "reference": REFERENCE,
        "rule": (
            f"recommended: the lowest busy_over_quiet among the policies whose quiet_loss (against {REFERENCE}) "
            f"is at most {s.max_quiet_loss:g}"
        ),
        "timing": "each measurement a fresh process; ratios = median of per-round ratios, _spread = "
        "[lowest, highest], _rounds = rounds",
        "default_policy": DEFAULT_POLICY,
        "recommended": recommended,
        "recommended_why": why,
        "by_policy": by_policy,
        "order": [[f"{p}/{c}" for p, c in this] for this in order],
        "runs": [dict(run) for run in runs],
    }


def recommend(by_policy: Mapping[str, Mapping[str, Any]], s: Settings) -> tuple[str | None, str]:
    """The policy with the lowest ``busy_over_quiet`` whose ``quiet_loss`` is at most ``s.max_quiet_loss`` (the
    first listed on a tie), and why; None when the record cannot say (no busy or quiet runs, no ``spin``)."""
    if not set(CONDITIONS) <= set(s.conditions):
        return None, "needs both conditions, quiet and busy"
    if REFERENCE not in s.policies:
        return None, f"needs the {REFERENCE} policy: the quiet loss is measured against it"
    allowed = [p for p, e in by_policy.items() if e["quiet_loss"] <= s.max_quiet_loss]
    best = min(allowed, key=lambda p: by_policy[p]["busy_over_quiet"])  # spin always qualifies (loss 0)
    e = by_policy[best]
    return best, (
        f"busy/quiet {e['busy_over_quiet']:.2f}x, quiet loss {100 * e['quiet_loss']:+.1f}% "
        f"(at most {100 * s.max_quiet_loss:g}% allowed)"
    )


def contention_rows(result: Mapping[str, Any]) -> list[tuple[str, float, str]]:
    """Rows for the bench's printed table (``benchmark.table.Row``: label, value, unit): per policy its
    busy/quiet ratio with spread (or its quiet seconds when only quiet runs were made)."""
    rows = []
    for p, e in result["by_policy"].items():
        if "busy_over_quiet" in e:
            lo, hi = e["busy_over_quiet_spread"]
            loss = f", quiet loss {100 * e['quiet_loss']:+.1f}%" if "quiet_loss" in e else ""
            mark = " <- recommended" if result.get("recommended") == p else ""
            rows.append(
                (
                    f"contention {p}: busy / quiet",
                    e["busy_over_quiet"],
                    f"x (rounds {lo:.2f}..{hi:.2f}, n={e['busy_over_quiet_rounds']}; quiet {e['quiet_s']:.2f} s, "
                    f"busy {e['busy_s']:.2f} s{loss}){mark}",
                )
            )
        else:
            for c in result["conditions"]:
                rows.append((f"contention {p}: {c}", e[f"{c}_s"], f"s for {result['steps']} steps"))
    return rows


# ---- the child -------------------------------------------------------------------------------------------------
def child_main(argv: Sequence[str]) -> None:
    """``python -c CHILD_CODE CONFIG STEPS WARMUP BATCH``: time the steps, print the result line."""
    config, steps, warmup, batch_size = argv
    cfg = OmegaConf.load(config)
    assert isinstance(cfg, DictConfig)
    result = child_run(cfg, int(steps), int(warmup), int(batch_size))
    print(RESULT_MARK + json.dumps(result), flush=True)


def child_run(
    cfg: DictConfig, steps: int, warmup: int, batch_size: int, clock: Clock = time.perf_counter
) -> dict[str, Any]:
    """``steps`` bare-loop training steps of ``cfg`` on one batch, after ``warmup`` untimed ones, as the bench
    builds them; with what this process ran under (thread variables, torch's thread count)."""
    report = {
        "env": {var: os.environ.get(var) for var in (*THREAD_VARS, POLICY_ENV)},
        "threads": torch.get_num_threads(),
        "keep_freed_memory": keep_freed_memory(bool(cfg.get("keep_freed_memory", False))),
    }
    device = device_of(cfg)
    masks = instantiate(cfg.masks)
    with open_dict(cfg):
        if cfg.get("bench") is None:
            cfg.bench = {}
        cfg.bench.data_batches = 1  # data_rate: one batch is all the steps need
    _, batch = data_rate(cfg, masks, batch_size)
    parts, prepare = plain_parts(cfg, masks, device)
    step = gan_step_fn(cfg, parts, prepare, batch, toggle=True)
    for _ in range(warmup):
        step()
    synchronize(device)
    t0 = clock()
    for _ in range(steps):
        step()
    synchronize(device)
    return {**report, "seconds": clock() - t0, "steps": steps, "device": str(device)}
