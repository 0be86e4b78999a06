"""``_target_``s in configs: walking them, and whether one imports, without calling anything.

Shared by the up-front config check (a misspelt class) and checkpoint loading (a crafted config must not call
anything outside this package's model and mask classes).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig


def walk_targets(node: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(key path, target)`` for each ``_target_`` in an OmegaConf config (interpolations left unresolved) or in
    plain dicts and lists (a checkpoint's stored config)."""
    if isinstance(node, Mapping):
        items = node.items_ex(resolve=False) if isinstance(node, DictConfig) else node.items()
        for key, value in items:
            if key == "_target_":
                yield prefix, str(value)
            else:
                yield from walk_targets(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, ListConfig | list | tuple):
        for i, item in enumerate(node):
            yield from walk_targets(item, f"{prefix}[{i}]")


def importable(target: str) -> bool:
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return callable(obj)
    return False
