"""The errors a user can cause and fix: the CLI prints them without a traceback and exits 2. Anything else that
escapes a command is a bug and keeps its traceback.

Standard library only (install.sh imports appliance.models, which uses these, before the venv exists).
"""
from __future__ import annotations


class UsageError(ValueError):
    """Bad input from the user (arguments, files, names): the message says what to change."""


class ConfigError(UsageError):
    """The configuration names an unknown key or a value of the wrong type; the message names the key."""


class ModelError(UsageError):
    """A model is missing, unknown or does not match its manifest or registry entry."""


class Cancelled(Exception):
    """A long job was asked to stop (Ctrl-C, or a UI's cancel). The unit of work in progress is dropped and its
    run is left unclosed, so it can be resumed exactly like a killed one."""
