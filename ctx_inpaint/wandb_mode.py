"""W&B stays offline unless the user configured it: no network access is attempted by default."""

from __future__ import annotations

import netrc
import os
from pathlib import Path


def wandb_configured() -> bool:
    """True when an API key is set in the environment or in ~/.netrc (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc(str(Path(os.environ.get("NETRC", Path.home() / ".netrc")))).authenticators(
            "api.wandb.ai"
        )
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return auth is not None


def ensure_wandb_mode() -> str:
    """Set ``WANDB_MODE=offline`` unless the user chose a mode or configured a key; return the mode."""
    if "WANDB_MODE" not in os.environ and not wandb_configured():
        os.environ["WANDB_MODE"] = "offline"
    return os.environ.get("WANDB_MODE", "online")
