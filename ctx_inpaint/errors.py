"""Errors a user can fix, reported by the CLIs as one line (no traceback) and a non-zero exit status."""

from __future__ import annotations

import re


class UserError(Exception):
    """Bad input: the message is one line naming the config key or file, the value, and what was expected."""


class ConfigError(UserError, ValueError):
    """A config value that training would refuse or crash on."""


class DataError(UserError, ValueError):
    """Image files or folders that cannot be used."""


class MissingDataError(UserError, FileNotFoundError):
    """A data folder or input path that does not exist or holds no images."""


class InputError(UserError, ValueError):
    """A CLI flag, an image, a mask or an API argument that cannot be used."""


def one_line(err: BaseException) -> str:
    """The error as one line: its message, whitespace collapsed."""
    return " ".join(str(err).split()) or type(err).__name__


def keyed(message: str, key: str) -> str:
    """One line that names a config key: ``key: message`` unless the message already starts with one."""
    message = " ".join(message.split())
    return message if re.match(r"^[\w/]+(\.[\w/\[\]]+)+:", message) else f"{key}: {message}"


def instantiation_message(err: BaseException, default_key: str) -> str:
    """A Hydra ``InstantiationException`` as one line: its cause's message, named by the failing node's
    ``full_key`` (which Hydra puts in its own message) or ``default_key``."""
    found = re.search(r"full_key: (\S+)", str(err))
    cause = err.__cause__ if err.__cause__ is not None else err
    return keyed(str(cause), found.group(1) if found else default_key)


def check_number(key: str, value: object) -> float:
    """``value`` as a float, or a one-line ``ConfigError`` naming ``key`` (booleans and strings are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}: got {value!r}; expected a number")
    return float(value)


def check_range(
    key: str, value: object, lo: float, hi: float, lo_inclusive: bool = True, hi_inclusive: bool = True
) -> float:
    """The one range rule of every constructor and of the up-front check: ``value`` in the interval, else one
    line ``key: got VALUE; expected a value in [lo, hi]`` (NaN is outside every interval)."""
    v = check_number(key, value)
    if not ((v >= lo if lo_inclusive else v > lo) and (v <= hi if hi_inclusive else v < hi)):
        interval = f"{'[' if lo_inclusive else '('}{lo:g}, {hi:g}{']' if hi_inclusive else ')'}"
        raise ConfigError(f"{key}: got {value}; expected a value in {interval}")
    return v
