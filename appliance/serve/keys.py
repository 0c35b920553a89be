"""API keys of the server: a TOML file of key ids, the sha256 of each key (the key itself is shown once, when it is
made, and never stored) and the access groups each key may read. A key without groups never sees a chunk that has
access groups.

    [[key]]
    id = "helpdesk"
    sha256 = "9f2c..."
    groups = ["hr"]

The file must belong to the user running the server (or root) and be writable by nobody else: whoever can write it
can grant themselves every group.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import UsageError

NAME = re.compile(r"[A-Za-z0-9_.-]+")
LOCAL = "local"   # the key id of callers on localhost when the server runs without a keys file


@dataclass(frozen=True)
class ApiKey:
    id: str
    sha256: str
    groups: tuple[str, ...]


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def load_keys(path: Path) -> list[ApiKey]:
    """Read and check a keys file (owner, permissions, fields, unique ids)."""
    try:
        st = path.stat()
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"no keys file at {path} (make keys with `appliance apikey --keys {path} --id NAME`)") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML: {e}") from None
    if st.st_uid not in (0, os.getuid()) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UsageError(f"{path} must belong to you (or root) and be writable by nobody else: whoever can write "
                         f"it can grant keys every access group")
    keys = []
    for n, k in enumerate(raw.get("key", []), 1):
        if not isinstance(k.get("id"), str) or not isinstance(k.get("sha256"), str) or len(k["sha256"]) != 64:
            raise UsageError(f"{path}: key {n} needs an id and the sha256 of the key (64 hex digits)")
        keys.append(ApiKey(k["id"], k["sha256"].lower(), tuple(sorted(k.get("groups", [])))))
    if len({k.id for k in keys}) != len(keys):
        raise UsageError(f"{path}: key ids must be unique")
    return keys


def match(keys: list[ApiKey], presented: str) -> ApiKey | None:
    """The key whose hash the presented key has (compared in constant time), or None."""
    got = digest(presented)
    found = None
    for k in keys:
        if hmac.compare_digest(k.sha256, got):
            found = k
    return found


def add_key(path: Path, key_id: str, groups: list[str]) -> str:
    """Make a key, append its hash to `path` (created 0600 if missing) and return the key (shown once)."""
    for name in [key_id, *groups]:
        if not NAME.fullmatch(name):
            raise UsageError(f"{name!r}: key ids and group names are letters, digits, '.', '_' and '-'")
    existing = load_keys(path) if path.exists() else []
    if any(k.id == key_id for k in existing):
        raise UsageError(f"{path} has a key {key_id!r} already")
    key = "sk-appliance-" + secrets.token_urlsafe(32)
    entry = (f'\n[[key]]\nid = "{key_id}"\nsha256 = "{digest(key)}"\n'
             f'groups = [{", ".join(chr(34) + g + chr(34) for g in sorted(groups))}]\n')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(entry)
    return key
