"""Who may see what: the access groups the local OS user running the appliance is entitled to.

The groups a caller names (`--groups`, a golden question's `groups`) are a request; the retriever applies the request
clamped to the caller's entitlement, so no command line, question file or config reaches a chunk of a group its user
does not hold:

- the administrator (uid 0) is entitled to every group (they can read the index files anyway);
- anyone else gets what an administrator-owned mapping file (`access.map_file`, default /etc/appliance/access.toml)
  grants to their user name or to one of their OS groups - and nothing when there is no such file, or when it or its
  folder is not owned by root or is writable by anyone else (then it does not count, and `doctor` says why).

    [users]                 # OS user name -> access groups
    alice = ["hr"]
    [os_groups]             # OS group name -> access groups (a user gets those of every group they are in)
    hr-staff = ["hr"]
    board = ["board"]

Other local users are kept out of the index and the audit store by file permissions (workspace.py: 0700 / 0600).
"""
from __future__ import annotations

import grp
import os
import pwd
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from appliance.config import Config
from appliance.errors import UsageError


@dataclass(frozen=True)
class Entitlement:
    """The access groups one OS user may use (None: every group), and where that came from."""

    user: str
    groups: frozenset[str] | None
    source: str

    def clamp(self, requested: list[str]) -> list[str]:
        """The requested groups this user holds (never more than asked for)."""
        return sorted(set(requested) if self.groups is None else set(requested) & self.groups)

    def check(self, requested: list[str]) -> list[str]:
        """The requested groups, refused with a clear error if any is not this user's."""
        denied = sorted(set(requested) - set(self.clamp(requested)))
        if denied:
            raise UsageError(f"user {self.user} is not entitled to access group(s) {', '.join(denied)} "
                             f"({self.source})")
        return sorted(set(requested))


def entitlement(cfg: Config, uid: int | None = None) -> Entitlement:
    """The entitlement of the OS user `uid` (default: this process's effective user)."""
    uid = os.geteuid() if uid is None else uid
    try:
        entry = pwd.getpwuid(uid)
        user, gid = entry.pw_name, entry.pw_gid
    except KeyError:
        user, gid = str(uid), None
    if uid == 0:
        return Entitlement(user, None, "the administrator (root) holds every group")
    path = Path(cfg.access.map_file)
    problem = _untrusted(path)
    if problem:
        return Entitlement(user, frozenset(), f"no group is granted: {problem}")
    try:
        mapping = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        return Entitlement(user, frozenset(), f"no group is granted: {path} cannot be read ({e})")
    os_groups = {g.gr_name for g in grp.getgrall() if user in g.gr_mem}
    if gid is not None:
        try:
            os_groups.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            pass
    granted = set(_names(mapping.get("users", {}).get(user, [])))
    for name in os_groups:
        granted |= set(_names(mapping.get("os_groups", {}).get(name, [])))
    return Entitlement(user, frozenset(granted), f"granted by {path}")


def _untrusted(path: Path) -> str | None:
    """Why a mapping file does not count (None: it does): it and its folder must be root's and writable only by
    root."""
    for p, what in ((path, "the mapping file"), (path.parent, "its folder")):
        try:
            st = p.stat()
        except OSError:
            return f"{what} {p} does not exist (an administrator creates it)"
        if st.st_uid != 0:
            return f"{what} {p} is not owned by root"
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return f"{what} {p} is writable by others than root"
    return None


def _names(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
