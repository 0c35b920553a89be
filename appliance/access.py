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
    text, problem = _read_trusted(path)
    if text is None:
        return Entitlement(user, frozenset(), f"no group is granted: {problem}")
    try:
        mapping = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return Entitlement(user, frozenset(), f"no group is granted: {path} is not valid TOML ({e})")
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


def _read_trusted(path: Path) -> tuple[str | None, str]:
    """The mapping's text if it counts, else None and why. It counts when the file (opened without following a
    link, then checked on the open descriptor: no swap between check and read) is root's and writable only by root,
    and so is every folder above it (a world-writable folder counts only with the sticky bit, as /tmp has: others
    cannot replace what root put there)."""
    real = Path(os.path.realpath(path))
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        return None, f"the mapping file {path} cannot be opened ({e.strerror}; an administrator creates it)"
    try:
        st = os.fstat(fd)
        if st.st_uid != 0:
            return None, f"the mapping file {real} is not owned by root"
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None, f"the mapping file {real} is writable by others than root"
        for folder in real.parents:
            fs = folder.stat()
            if fs.st_uid != 0:
                return None, f"its folder {folder} is not owned by root"
            if fs.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not fs.st_mode & stat.S_ISVTX:
                return None, f"its folder {folder} is writable by others than root"
        with os.fdopen(fd, closefd=False) as f:
            return f.read(), ""
    finally:
        os.close(fd)


def _names(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
