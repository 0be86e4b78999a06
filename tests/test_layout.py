"""The package's shape: no import cycles, no CLI imported as a library, and a README code map that names every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ctx_inpaint"
README = PACKAGE.parent / "README.md"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every ctx_inpaint module ``path`` imports, at any level (function-level imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(path, set(mods)) - {name} for name, path in mods.items()}


def _is_cli(path: Path) -> bool:
    return '__name__ == "__main__"' in path.read_text()


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


def test_no_module_imports_a_cli() -> None:
    mods = _modules()
    clis = {name for name, path in mods.items() if _is_cli(path)}
    assert {"ctx_inpaint.train", "ctx_inpaint.inpaint", "ctx_inpaint.evaluate", "ctx_inpaint.bench"} <= clis
    offenders = {f"{name} imports {sorted(deps & clis)}" for name, deps in _graph().items() if deps & clis}
    assert not offenders, offenders


def test_the_readme_code_map_names_every_module_and_only_those() -> None:
    text = README.read_text()
    section = text[text.index("## Code map") :]
    section = section[: section.index("\n## ", 1)] if "\n## " in section[1:] else section
    named = set(re.findall(r"`(ctx_inpaint/[\w/]+\.py)`", section))
    actual = {
        p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"
    }
    assert actual - named == set(), f"modules missing from the README's code map: {sorted(actual - named)}"
    assert named - actual == set(), (
        f"the README's code map names modules that do not exist: {sorted(named - actual)}"
    )


def test_the_public_api_imports_and_the_readme_lists_it() -> None:
    import ctx_inpaint
    import ctx_inpaint.train  # noqa: F401 - the CLI module must not shadow a public name
    from ctx_inpaint import ContextEncoderModule, Inpainter, InpaintingDataModule, fit, load_model
    from ctx_inpaint.inference.inpainter import Inpainter as Defined
    from ctx_inpaint.training.run import train

    assert Inpainter is Defined and callable(load_model) and fit is train
    assert ContextEncoderModule.__module__ == "ctx_inpaint.training.module"
    assert InpaintingDataModule.__module__ == "ctx_inpaint.data.datamodule"
    text = README.read_text()
    api = text[text.index("### Python API") :]
    listed = set(re.search(r"from ctx_inpaint import ([^\n]+)", api).group(1).replace(" ", "").split(","))
    assert listed == set(ctx_inpaint.__all__) - {"__version__"}
    try:
        ctx_inpaint.Nope  # noqa: B018
    except AttributeError as err:
        assert "Nope" in str(err)
    else:
        raise AssertionError("an unknown name should raise AttributeError")
