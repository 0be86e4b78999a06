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
