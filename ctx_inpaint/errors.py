"""Errors a user can fix, reported by the CLIs as one line (no traceback) and a non-zero exit status."""

from __future__ import annotations


class UserError(Exception):
    """Bad input: the message is one line naming the config key or file, the value, and what was expected."""


class ConfigError(UserError, ValueError):
    """A config value that training would refuse or crash on."""


class DataError(UserError, ValueError):
    """Image files or folders that cannot be used."""


class MissingDataError(UserError, FileNotFoundError):
    """A data folder that does not exist or holds no images."""


def one_line(err: BaseException) -> str:
    """The error as one line: its message, whitespace collapsed."""
    return " ".join(str(err).split()) or type(err).__name__
