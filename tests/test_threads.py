"""The thread policy (``ctx_inpaint.common.threads``), set by every command before torch loads, and the bench's
contention mode (``ctx_inpaint.benchmark.contention``).

Nothing here depends on the speed or the load of the machine: the contention logic runs on a fake runner, a fake
busy process and a fake clock; the real child runs one step and is checked for what it ran under, not how fast.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from omegaconf import open_dict

from ctx_inpaint.benchmark import contention
from ctx_inpaint.benchmark.contention import (
    CHILD_CODE,
    RESULT_MARK,
    ChildFailed,
    Settings,
    busy_process,
    child_env,
    contention_rows,
    recommend,
    run_contention,
    schedule,
    settings_from,
)
from ctx_inpaint.common import cli, threads
from ctx_inpaint.common.threads import (
    AUTO,
    CHOICES,
    DEFAULT_POLICY,
    POLICIES,
    POLICY_ENV,
    THREAD_VARS,
    apply_thread_policy,
    policy_env,
    policy_name,
)
from ctx_inpaint.errors import ConfigError, InputError
from tests.commands import COMMANDS, run_command

ROOT = Path(__file__).resolve().parents[1]


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any thread setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS and k != POLICY_ENV}
    return env | extra


def _probe(code: str, policy: str) -> subprocess.CompletedProcess:
    """``python -c code`` in a fresh interpreter under ``policy`` (no other thread setting); the timeout only stops a
    hang."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env=_clean_env(**{POLICY_ENV: policy}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )


# ---- the policy ---------------------------------------------------------------------------------------------------
@pytest.fixture
def machine(monkeypatch) -> Callable[[int, int], None]:
    """Fake what ``auto`` looks at: ``busy`` of this process's ``cpus`` CPUs kept busy by others (no SMT)."""

    def set_to(busy: int, cpus: int = 2) -> None:
        monkeypatch.setattr(threads, "allowed_cpus", lambda: list(range(cpus)))
        monkeypatch.setattr(
            threads, "physical_cores", lambda lines=None, cpus=None: len(list(cpus or [])) or 1
        )
        monkeypatch.setattr(threads, "busy_cpus", lambda cpus, **_: busy)

    return set_to


def test_the_default_policy_is_auto_and_set_where_the_user_set_nothing(machine) -> None:
    assert DEFAULT_POLICY == AUTO
    machine(0)
    env: dict[str, str] = {}
    assert apply_thread_policy(env, modules={}) is True
    assert env == {}  # a quiet machine: PyTorch's own threads and waits
    assert threads.describe_thread_policy(env)["policy"] == AUTO
    machine(1)
    blank = {POLICY_ENV: " "}
    apply_thread_policy(blank, modules={})
    assert blank == {POLICY_ENV: " ", "OMP_NUM_THREADS": "1"}
    machine(1)
    mine = {"OMP_NUM_THREADS": "2"}
    apply_thread_policy(mine, modules={})
    assert mine == {"OMP_NUM_THREADS": "2"}  # the user's count wins
    # ... and then auto does not look at the CPUs at all (its only variable is taken)
    assert policy_env(AUTO, {"OMP_NUM_THREADS": "2"}, choose=lambda: pytest.fail("looked")) == {}


@pytest.mark.parametrize(
    ("busy", "logical", "cores", "env"),
    [
        (0, 2, 2, {}),
        (1, 2, 2, {"OMP_NUM_THREADS": "1"}),
        (2, 2, 2, {"OMP_NUM_THREADS": "1"}),
        (2, 8, 8, {"OMP_NUM_THREADS": "6"}),
        (
            1,
            16,
            8,
            {},
        ),  # SMT: 15 free logical CPUs still hold PyTorch's 8 threads (one per core): nothing set
        (10, 16, 8, {"OMP_NUM_THREADS": "6"}),
    ],
)
def test_auto_uses_the_cpus_others_leave_free_never_more_threads_than_cores(
    busy: int, logical: int, cores: int, env: dict[str, str]
) -> None:
    assert threads.auto_env(busy, logical, cores)[0] == env


def _stat(*cpus: tuple[int, int]) -> str:
    """A /proc/stat text: per CPU (busy, idle) jiffies, split over user and idle."""
    total = [sum(c) for c in zip(*cpus)] if cpus else [0, 0]
    lines = [f"cpu  {total[0]} 0 0 {total[1]} 0 0 0 0 0 0"]
    lines += [f"cpu{i} {b} 0 0 {idle} 0 0 0 0 0 0" for i, (b, idle) in enumerate(cpus)]
    return "\n".join([*lines, "procs_running 3", ""])


def test_busy_cpus_counts_this_process_cpus_that_others_kept_busy() -> None:
    """CPU 0 busy 9 of 10 jiffies, CPU 1 idle, CPU 2 busy but outside the affinity mask (another container's)."""
    reads = iter([_stat((100, 100), (100, 100), (100, 100)), _stat((109, 101), (101, 109), (110, 100))])
    waits: list[float] = []
    assert threads.busy_cpus([0, 1], interval=0.1, read=lambda: next(reads), sleep=waits.append) == 1
    assert waits == [0.1]
    gone = lambda: (_ for _ in ()).throw(OSError("no /proc"))  # noqa: E731
    assert threads.busy_cpus([0, 1], read=gone, sleep=waits.append) == 0


def test_physical_cores_counts_smt_siblings_once_within_the_affinity_mask() -> None:
    cpuinfo = []
    for p, core in enumerate([0, 1, 0, 1]):  # 2 cores, 2 threads each
        cpuinfo += [f"processor\t: {p}", "physical id\t: 0", f"core id\t\t: {core}", ""]
    assert threads.physical_cores(cpuinfo, cpus=[0, 1, 2, 3]) == 2
    assert threads.physical_cores(cpuinfo, cpus=[0, 2]) == 1
    assert threads.physical_cores(["processor : 0", "", "processor : 1", ""], cpus=[0, 1]) == 2  # no core ids


@pytest.mark.parametrize(
    ("given", "added"),
    [
        ({POLICY_ENV: "spin"}, {}),
        ({POLICY_ENV: "passive"}, {"OMP_WAIT_POLICY": "PASSIVE"}),
        ({POLICY_ENV: "short-spin"}, {"GOMP_SPINCOUNT": str(threads.SHORT_SPINCOUNT)}),
        ({POLICY_ENV: "one-thread"}, {"OMP_NUM_THREADS": "1"}),
        # The user's own variables win; a wait variable keeps the policy off both wait variables.
        ({POLICY_ENV: "passive", "OMP_WAIT_POLICY": "ACTIVE"}, {}),
        ({POLICY_ENV: "passive", "GOMP_SPINCOUNT": "5"}, {}),
        ({POLICY_ENV: "short-spin", "OMP_WAIT_POLICY": "PASSIVE"}, {}),
        ({POLICY_ENV: "one-thread", "OMP_NUM_THREADS": "2"}, {}),
        ({POLICY_ENV: "one-thread", "OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_NUM_THREADS": "1"}),
        ({POLICY_ENV: "passive", "OMP_NUM_THREADS": "2"}, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ],
)
def test_policies_set_their_variables_with_setdefault(given: dict[str, str], added: dict[str, str]) -> None:
    env = dict(given)
    assert policy_env(policy_name(env), env) == added
    assert apply_thread_policy(env, modules={}) is True
    assert env == given | added


def test_nothing_is_set_once_torch_is_loaded() -> None:
    env = {POLICY_ENV: "passive"}
    assert apply_thread_policy(env, modules={"torch": object()}) is False
    assert env == {POLICY_ENV: "passive"}


def test_a_bad_policy_name_is_a_user_error_naming_the_choices(capsys) -> None:
    with pytest.raises(InputError, match=f"{POLICY_ENV}: got 'fast'; expected one of auto, spin, passive"):
        policy_name({POLICY_ENV: "fast"})
    with pytest.raises(SystemExit) as stop:
        apply_thread_policy({POLICY_ENV: "fast"}, modules={"torch": object()})  # refused even after torch
    assert stop.value.code == cli.USER_ERROR_EXIT
    assert capsys.readouterr().err.splitlines() == [
        f"{cli.PREFIX} {POLICY_ENV}: got 'fast'; expected one of {', '.join(CHOICES)} (unset: {DEFAULT_POLICY})"
    ]


def test_the_error_line_is_the_commands_one() -> None:
    # threads.py runs before torch, so it cannot import ctx_inpaint.common.cli (which imports Lightning).
    assert (threads.ERROR_PREFIX, threads.ERROR_EXIT) == (cli.PREFIX, cli.USER_ERROR_EXIT)


def test_a_command_refuses_a_bad_policy_with_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setenv(POLICY_ENV, "fast")
    # startup applies the policy when it is imported: once per process; here the command imports it afresh.
    monkeypatch.delitem(sys.modules, "ctx_inpaint.common.startup", raising=False)
    assert run_command("evaluate", ["--help"]) == cli.USER_ERROR_EXIT
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"{cli.PREFIX} {POLICY_ENV}: got 'fast'"), err
    assert all(name in err[0] for name in POLICIES)


def test_every_command_applies_the_policy_first() -> None:
    """Its first statement after the docstring imports ``ctx_inpaint.common.startup`` (ruff's import sorting keeps
    it there: pyproject.toml's isort section)."""
    wrong = []
    for name in COMMANDS:
        body = ast.parse((ROOT / "ctx_inpaint" / f"{name}.py").read_text()).body
        first = body[1] if isinstance(body[0], ast.Expr) else body[0]
        if not (
            isinstance(first, ast.Import) and [a.name for a in first.names] == ["ctx_inpaint.common.startup"]
        ):
            wrong.append(name)
    assert not wrong, f"commands whose first statement is not `import ctx_inpaint.common.startup`: {wrong}"


def test_commands_apply_the_policy_before_torch_is_imported() -> None:
    """A bad policy stops each command inside the startup import: one line, exit 1, and (``-X importtime``) torch was
    never imported on the way there. A good one is applied there, torch not yet loaded."""
    for name in COMMANDS:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", f"ctx_inpaint.{name}", "--help"],
            env=_clean_env(**{POLICY_ENV: "fast"}),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        lines = done.stderr.splitlines()
        errors = [line for line in lines if not line.startswith("import time:")]
        imported = [line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")]
        assert done.returncode == cli.USER_ERROR_EXIT, (name, done.stderr[-2000:])
        assert len(errors) == 1 and errors[0].startswith(f"{cli.PREFIX} {POLICY_ENV}"), (name, errors)
        assert "ctx_inpaint.common.startup" in imported, name
        assert not [m for m in imported if m == "torch" or m.startswith("torch.")], name
    probe = (
        "import sys, os; import ctx_inpaint.common.startup as s; "
        "print(s.APPLIED, 'torch' in sys.modules, os.environ.get('OMP_NUM_THREADS'))"
    )
    done = _probe(probe, "one-thread")
    assert done.stdout.split() == ["True", "False", "1"], done.stderr


def test_the_policy_reaches_torch() -> None:
    """Applied before ``import torch``, the one-thread policy is torch's thread count; applied after, it changes
    nothing (what a command run inside a test process does)."""
    probe = (
        "import ctx_inpaint.common.startup as s, torch; "
        "from ctx_inpaint.common.threads import apply_thread_policy as a; "
        "print(s.APPLIED, torch.get_num_threads(), a())"
    )
    done = _probe(probe, "one-thread")
    assert done.stdout.split() == ["True", "1", "False"], done.stderr[-2000:]


# ---- contention: the logic on fakes ---------------------------------------------------------------------------
# Seconds of one child: (quiet, busy) per policy. Binary fractions: the arithmetic is checked exactly.
QUIET_BUSY = {
    "spin": (16.0, 36.0),  # busy/quiet 2.25, the reference
    "passive": (17.0, 24.0),  # 1.41 but 6.25% slower quiet: not allowed
    "short-spin": (16.5, 24.75),  # 1.5, 3.125% slower quiet: the recommendation
    "one-thread": (24.0, 26.0),  # 1.08, 50% slower quiet
}
DRIFT = (1.0, 1.5, 1.25)  # the machine's speed in each round: every run of a round is slower alike


class FakeMachine:
    """One fake busy process at a time, a runner that answers from ``QUIET_BUSY`` (times the round's drift) and
    records what ran, and a clock that only moves when a child runs."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.events: list[tuple[str, ...]] = []
        self.busy = 0
        self.now = 0.0
        self.calls = 0
        self.fail_at = fail_at

    @contextmanager
    def start_busy(self) -> Iterator[None]:
        self.busy += 1
        self.events.append(("busy start",))
        try:
            yield
        finally:
            self.busy -= 1
            self.events.append(("busy stop",))

    def run(self, argv: Sequence[str], env: Mapping[str, str], timeout: float) -> str:
        policy = env[POLICY_ENV]
        condition = "busy" if self.busy else "quiet"
        self.events.append(("run", policy, condition))
        self.calls += 1
        if self.calls == self.fail_at:
            raise ChildFailed("contention child exited with status 1: boom")
        per_round = 2 * len(QUIET_BUSY)
        seconds = QUIET_BUSY[policy][condition == "busy"] * DRIFT[(self.calls - 1) // per_round]
        self.now += seconds + 3.0  # start-up and model building
        child = {
            "env": {var: env.get(var) for var in (*THREAD_VARS, POLICY_ENV)},
            "threads": 1 if policy == "one-thread" else 2,
            "seconds": seconds,
            "steps": int(argv[-3]),
            "device": "cpu",
        }
        return "a library's chatter\n" + RESULT_MARK + json.dumps(child) + "\n"

    def clock(self) -> float:
        return self.now


def _run(tiny_cfg, machine: FakeMachine, **overrides):
    return run_contention(
        tiny_cfg(),
        runner=machine.run,
        busy=machine.start_busy,
        clock=machine.clock,
        log=lambda line: None,
        **({"rounds": 3, "policies": list(QUIET_BUSY)} | overrides),
    )


def test_contention_ratios_losses_and_the_recommended_default(tiny_cfg) -> None:
    machine = FakeMachine()
    result = _run(tiny_cfg, machine)
    by = result["by_policy"]
    for policy, (quiet, busy) in QUIET_BUSY.items():
        e = by[policy]
        assert e["quiet_s"] == quiet * 1.25 and e["busy_s"] == busy * 1.25  # the median round
        # Per-round ratios: the drift cancels.
        assert e["busy_over_quiet"] == busy / quiet and e["busy_over_quiet_spread"] == [busy / quiet] * 2
        assert e["busy_over_quiet_rounds"] == 3
        assert e["quiet_loss"] == quiet / QUIET_BUSY["spin"][0] - 1.0
        assert e["env"] == dict(POLICIES[policy])
    assert by["spin"]["quiet_loss"] == 0.0
    assert [p for p in QUIET_BUSY if by[p]["meets_target"]] == ["short-spin"]
    assert result["recommended"] == "short-spin", result["recommended_why"]
    assert result["default_policy"] == DEFAULT_POLICY
    # Every run: what the child ran under, and the parent's wall time (the fake clock moved 3 s more than the steps).
    assert len(result["runs"]) == 3 * 2 * len(QUIET_BUSY)
    for run in result["runs"]:
        assert run["process_s"] == run["seconds"] + 3.0
        assert run["env"][POLICY_ENV] == run["policy"]
        assert {k: v for k, v in run["env"].items() if k in THREAD_VARS and v} == dict(
            POLICIES[run["policy"]]
        )
    json.dumps(result)  # JSON-serialisable
    rows = contention_rows(result)
    assert [r[0] for r in rows] == [f"contention {p}: busy / quiet" for p in QUIET_BUSY]
    assert rows[2][1] == 1.5 and rows[2][2].endswith("<- recommended")


def test_the_quiet_loss_limit_decides_between_policies() -> None:
    by = {
        "spin": {"busy_over_quiet": 2.0, "quiet_loss": 0.0},
        "passive": {"busy_over_quiet": 1.4, "quiet_loss": 0.05},  # at the limit: allowed
        "short-spin": {"busy_over_quiet": 1.3, "quiet_loss": 0.0625},
    }
    assert recommend(by, Settings(policies=tuple(by)))[0] == "passive"
    assert recommend(by, Settings(policies=tuple(by), max_quiet_loss=0.1))[0] == "short-spin"
    assert recommend(by, Settings(policies=tuple(by), max_quiet_loss=0.0))[0] == "spin"
    assert recommend(by, Settings(policies=("passive", "short-spin")))[0] is None  # no spin to compare with
    assert recommend(by, Settings(policies=tuple(by), conditions=("quiet",)))[0] is None


def test_contention_interleaves_rounds_rotates_policies_and_alternates_conditions(tiny_cfg) -> None:
    assert schedule(["a", "b", "c"], 3, ["quiet", "busy"]) == [
        [("a", "quiet"), ("a", "busy"), ("b", "quiet"), ("b", "busy"), ("c", "quiet"), ("c", "busy")],
        [("b", "busy"), ("b", "quiet"), ("c", "busy"), ("c", "quiet"), ("a", "busy"), ("a", "quiet")],
        [("c", "quiet"), ("c", "busy"), ("a", "quiet"), ("a", "busy"), ("b", "quiet"), ("b", "busy")],
    ]
    machine = FakeMachine()
    result = _run(tiny_cfg, machine)
    ran = [f"{e[1]}/{e[2]}" for e in machine.events if e[0] == "run"]
    assert ran == [name for this in result["order"] for name in this]
    # A fresh busy process around each busy run, and only those.
    events = machine.events
    for i, e in enumerate(events):
        if e[0] == "run":
            busy = e[2] == "busy"
            assert (events[i - 1] == ("busy start",)) == busy and (events[i + 1] == ("busy stop",)) == busy


@pytest.mark.parametrize("fail_at", [1, 2, 9])  # round 1's spin quiet, its spin busy, round 2's first (busy)
def test_the_busy_process_is_stopped_even_when_a_child_fails(tiny_cfg, fail_at: int) -> None:
    machine = FakeMachine(fail_at=fail_at)
    with pytest.raises(ChildFailed, match="boom"):
        _run(tiny_cfg, machine)
    assert machine.calls == fail_at and machine.busy == 0
    assert machine.events.count(("busy start",)) == machine.events.count(("busy stop",))
    last = max(i for i, e in enumerate(machine.events) if e[0] == "run")
    after = [("busy stop",)] if machine.events[last][2] == "busy" else []
    assert machine.events[last + 1 :] == after


def test_the_real_busy_process_is_killed_when_the_block_ends() -> None:
    with pytest.raises(RuntimeError, match="inside"):
        with busy_process() as proc:
            assert proc.poll() is None  # running
            raise RuntimeError("inside")
    assert proc.returncode is not None


def test_contention_settings_come_from_the_config_and_are_checked(tiny_cfg) -> None:
    cfg = tiny_cfg()
    assert settings_from(cfg) == Settings()
    with open_dict(cfg):
        cfg.bench = {"contention": {"policies": ["spin", "passive"], "steps": 7}}
    s = settings_from(cfg, rounds=5)
    assert (s.policies, s.steps, s.rounds) == (("spin", "passive"), 7, 5)
    for bad, key in [
        ({"policies": ["spin", "fast"]}, "policies"),
        ({"policies": []}, "policies"),
        ({"policies": ["spin", "spin"]}, "policies"),
        ({"conditions": ["noisy"]}, "conditions"),
        ({"steps": 0}, "steps"),
        ({"rounds": "3"}, "rounds"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"max_quiet_loss": -0.1}, "max_quiet_loss"),
        ({"stepz": 3}, "unknown"),
    ]:
        with pytest.raises(ConfigError, match=f"bench.contention.*{key}"):
            settings_from(cfg, **bad)


def test_children_run_with_exactly_their_policy() -> None:
    parent = {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "3", POLICY_ENV: "passive", "HOME": "/h"}
    env = child_env("short-spin", parent)
    assert {k: env[k] for k in env if k in (*THREAD_VARS, POLICY_ENV, "HOME")} == {
        "GOMP_SPINCOUNT": str(threads.SHORT_SPINCOUNT),
        POLICY_ENV: "short-spin",
        "HOME": "/h",
    }
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)
    # auto chooses in the child, at its start (CHILD_CODE imports startup first): only its name is passed.
    auto = child_env("auto", parent)
    assert {k: auto[k] for k in auto if k in (*THREAD_VARS, POLICY_ENV)} == {POLICY_ENV: "auto"}
    assert "ctx_inpaint.common.startup" in CHILD_CODE.split(";")[1]
    assert child_env("spin", parent | {"PYTHONPATH": "/x"})["PYTHONPATH"].split(os.pathsep) == [
        str(ROOT),
        "/x",
    ]


# ---- contention: one real child ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_real_child_runs_under_its_policy(tiny_cfg) -> None:
    """One training step of the tiny config in a real child under ``one-thread``: the child saw exactly that policy's
    variables, and torch (loaded after them) runs one thread."""
    lines: list[str] = []
    result = run_contention(
        tiny_cfg("trainer.precision=32-true"),
        policies=["one-thread"],
        conditions=["quiet"],
        steps=1,
        warmup=0,
        rounds=1,
        log=lines.append,
    )
    (run,) = result["runs"]
    assert run["env"] == {
        "OMP_WAIT_POLICY": None,
        "GOMP_SPINCOUNT": None,
        "OMP_NUM_THREADS": "1",
        POLICY_ENV: "one-thread",
    }
    assert run["threads"] == 1 and run["steps"] == 1 and run["seconds"] >= 0.0
    assert result["recommended"] is None and "quiet_s" in result["by_policy"]["one-thread"]
    assert len(lines) == 1 and "one-thread quiet" in lines[0]
    assert contention_rows(result)[0][0] == "contention one-thread: quiet"
    assert contention.REFERENCE == "spin"


def test_a_run_says_when_auto_gave_it_fewer_threads(monkeypatch, tmp_path: Path) -> None:
    """auto's one thread (something was busy during its look at start) is a line of the run's log; a policy that
    set no thread count, or spin, says nothing."""
    monkeypatch.setattr(threads, "_applied", {"policy": "spin", "set": {"OMP_WAIT_POLICY": "ACTIVE"}})
    assert threads.reduced_threads_line() is None
    monkeypatch.setattr(threads, "_applied", {"policy": "auto", "set": {}})
    assert threads.reduced_threads_line() is None
    monkeypatch.setattr(threads, "_applied", {"policy": "auto", "set": {"OMP_NUM_THREADS": "1"}})
    line = threads.reduced_threads_line()
    assert line is not None and line.startswith("threads: auto -> 1 thread(s): other processes were busy")
    assert "CTX_INPAINT_THREAD_POLICY=spin" in line
    run_dir = tmp_path / "run"
    argv = ["+experiment=l2_0999", "+debug=tiny", "trainer.max_epochs=1", f"hydra.run.dir={run_dir}"]
    assert run_command("train", argv) == 0
    logged = [x for x in (run_dir / "train.log").read_text().splitlines() if "[ctx-inpaint] threads:" in x]
    assert len(logged) == 1 and logged[0].endswith(f"[ctx-inpaint] {line}")
