"""The package's shape, checked by reading the source (the last test imports what the examples name):

- no import cycle between modules, and packages import only the packages below them (``LAYERS``);
- nothing imports a command module (``python -m ctx_inpaint.<command>``): tests run commands through
  ``tests/commands.py``;
- command modules are short (they parse, call the library and map user errors to one line);
- few library entries at the top of ``ctx_inpaint/``;
- the code map in ``docs/architecture.md`` names every module, and only those;
- every module opens with a docstring;
- ``tools/`` (repository tools) is not shipped in the wheel;
- the Python examples of the README and the docs use only names the package has.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ctx_inpaint"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
README = ROOT / "README.md"
PYPROJECT = ROOT / "pyproject.toml"

# The commands: ctx_inpaint/<name>.py, run as `python -m ctx_inpaint.<name>` (same list as tests/commands.py).
COMMANDS = ("train", "prepare", "inpaint", "evaluate", "export", "report", "bench", "demo")
COMMAND_MAX_LINES = 80
# Library entries allowed at the top of ctx_inpaint/ besides the commands, __init__.py and errors.py.
TOP_LEVEL_MAX = 10

# The layering, bottom first: a package may import only packages of a lower layer (never one of its own layer,
# never one above). `errors` is the top-level module ctx_inpaint/errors.py; `commands` are the modules above.
# docs/architecture.md ("Who owns what") draws the same picture.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("common",),
    ("models", "masks"),
    ("data",),
    ("config",),
    ("inference",),
    ("evaluation",),
    ("training",),
    ("reporting", "benchmark"),
    ("commands",),
)
RANK = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}

# Where imports are looked for: the package and everything in the repository that could import it.
SCANNED = ("ctx_inpaint", "tools", "experiments", "tests")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every ctx_inpaint module ``path`` imports, at any level (imports inside functions count too).

    ``from a.b import c`` imports ``a.b`` and, when ``a.b.c`` is a module, ``a.b.c``; relative imports are
    resolved against the importing module's package; ``importlib.import_module("a.b")`` and ``__import__("a.b")``
    with a literal name count as imports (``runpy.run_module`` does not: it runs a module as ``python -m``).
    """
    name = _module_name(path) if path.is_relative_to(ROOT) else path.stem
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in {"import_module", "__import__"})
            )
        ):
            names = [node.args[0].value]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(path, set(mods)) - {name} for name, path in mods.items()}


def _package_of(module: str) -> str | None:
    """The layer entry a module belongs to; None for ``ctx_inpaint`` itself (the lazy public facade)."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    if len(parts) == 2 and parts[1] in COMMANDS:
        return "commands"
    return parts[1]


def test_the_import_graph_has_no_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_packages_import_only_the_layers_below_them() -> None:
    graph = _graph()
    unplaced = sorted({p for m in graph if (p := _package_of(m)) is not None and p not in RANK})
    assert not unplaced, (
        f"packages or top-level modules missing from LAYERS in tests/test_layout.py: {unplaced}; place each in "
        "the layering (and in docs/architecture.md's picture)"
    )
    upward = set()
    for module, deps in graph.items():
        source = _package_of(module)
        for dep in deps:
            target = _package_of(dep)
            if source is None or target is None or target == source:
                continue
            if RANK[target] >= RANK[source]:
                upward.add(f"{module} ({source}) imports {dep} ({target})")
    assert not upward, "imports that do not point down the layering:\n" + "\n".join(sorted(upward))


def test_commands_exist_and_nothing_imports_one() -> None:
    commands = {f"ctx_inpaint.{name}" for name in COMMANDS}
    mods = _modules()
    assert commands <= set(mods), f"missing command modules: {sorted(commands - set(mods))}"
    offenders = set()
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if ".venv" in path.parts:
                continue
            hit = _imports(path, commands) - {_module_name(path)}
            if hit:
                offenders.add(f"{path.relative_to(ROOT)} imports {sorted(hit)}")
    assert not offenders, (
        "command modules are entry points, not libraries (run one with tests/commands.py::run_command; move "
        "what is shared into the library):\n" + "\n".join(sorted(offenders))
    )


def test_command_modules_are_short() -> None:
    long = {
        f"ctx_inpaint/{name}.py: {n} lines"
        for name in COMMANDS
        if (path := PACKAGE / f"{name}.py").exists()
        and (n := len(path.read_text().splitlines())) > COMMAND_MAX_LINES
    }
    assert not long, (
        f"command modules over {COMMAND_MAX_LINES} lines (the work belongs in the library): {sorted(long)}"
    )


def test_few_library_entries_at_the_top_of_the_package() -> None:
    ignored = {f"{name}.py" for name in COMMANDS} | {"__init__.py", "errors.py", "__pycache__"}
    entries = sorted(
        p.name
        for p in PACKAGE.iterdir()
        if p.name not in ignored and (p.suffix == ".py" or (p.is_dir() and any(p.glob("*.py"))))
    )
    assert len(entries) <= TOP_LEVEL_MAX, (
        f"{len(entries)} library entries at the top of ctx_inpaint/ (at most {TOP_LEVEL_MAX}): {entries}"
    )


def _code_map() -> set[str]:
    text = ARCHITECTURE.read_text()
    assert "## Code map" in text, f"{ARCHITECTURE.relative_to(ROOT)} has no '## Code map' section"
    section = text[text.index("## Code map") :]
    end = section.find("\n## ", 1)
    section = section if end < 0 else section[:end]
    return set(re.findall(r"^\|\s*`(ctx_inpaint/[\w/]+\.py)`\s*\|", section, flags=re.MULTILINE))


def test_the_code_map_names_every_module_and_only_those() -> None:
    named = _code_map()
    every = {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py")}
    modules = {p for p in every if not p.endswith("/__init__.py")}
    assert modules - named == set(), (
        f"modules missing from docs/architecture.md's code map: {sorted(modules - named)}"
    )
    # A package's __init__.py may have a row of its own; anything else named must exist.
    assert named - every == set(), (
        f"docs/architecture.md's code map names modules that do not exist: {sorted(named - every)}"
    )


def test_every_module_opens_with_a_docstring() -> None:
    bare = [
        path.relative_to(ROOT).as_posix()
        for path in sorted(PACKAGE.rglob("*.py"))
        if not (ast.get_docstring(ast.parse(path.read_text())) or "").strip()
    ]
    assert not bare, f"modules without a docstring first: {bare}"


def test_tools_are_not_shipped() -> None:
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads(PYPROJECT.read_text()).get("tool", {}).get("setuptools", {})
    packages = setuptools.get("packages", [])
    if isinstance(packages, list):
        shipped = [p for p in packages if p == "tools" or p.startswith("tools.")]
        assert not shipped, (
            f"pyproject.toml ships {shipped}; tools/ are repository tools, not part of the package"
        )
    else:  # packages.find: tools must be excluded or not included
        find = packages.get("find", {})
        include, exclude = find.get("include", ["*"]), find.get("exclude", [])
        assert "tools*" in exclude or all(pattern.startswith("ctx_inpaint") for pattern in include), find


def _python_examples(path: Path) -> str:
    return "\n".join(re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL))


def test_the_public_api_and_the_python_examples() -> None:
    import importlib

    import ctx_inpaint
    from ctx_inpaint import Inpainter, load_model

    assert {"Inpainter", "load_model"} <= set(ctx_inpaint.__all__)
    assert Inpainter.__module__.startswith("ctx_inpaint.inference.") and callable(load_model)
    for name in ctx_inpaint.__all__:
        getattr(ctx_inpaint, name)
    with pytest.raises(AttributeError, match="Nope"):
        ctx_inpaint.Nope  # noqa: B018
    assert _python_examples(README), "README.md has no Python example"
    # The Python examples of the README and the docs: what they import from ctx_inpaint exists (from the top level:
    # only public names), and the Inpainter methods they call exist.
    problems = []
    for page in [README, *sorted((ROOT / "docs").rglob("*.md"))]:
        code = _python_examples(page)
        where = page.relative_to(ROOT)
        for module, line in re.findall(r"from (ctx_inpaint[\w.]*) import ([^\n#]+)", code):
            names = {n.strip() for n in line.strip("() ").split(",") if n.strip()}
            if module == "ctx_inpaint":
                problems += [
                    f"{where}: {n} is not in ctx_inpaint.__all__" for n in names - set(ctx_inpaint.__all__)
                ]
                continue
            imported = importlib.import_module(module)
            problems += [f"{where}: {module} has no {n}" for n in sorted(names) if not hasattr(imported, n)]
        problems += [
            f"{where}: Inpainter has no {m}"
            for m in re.findall(r"\bInpainter\.(\w+)", code)
            if not hasattr(Inpainter, m)
        ]
    assert not problems, "Python examples that use names the package does not have:\n" + "\n".join(problems)
