"""Where a workspace keeps things: config.toml, audit.duckdb, reports/ and artifacts/ (content-addressed)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from appliance.config import Config, load_config, render_toml

ENV_WORKSPACE = "APPLIANCE_WORKSPACE"


@dataclass(frozen=True)
class Workspace:
    """A workspace directory and its loaded configuration."""

    root: Path
    config: Config

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def audit_path(self) -> Path:
        return self.root / "audit.duckdb"

    @property
    def index_dir(self) -> Path:
        return self.root / "index"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    def artifact_path(self, sha256: str, suffix: str = "") -> Path:
        """Content-addressed location for an artifact (adapter, export, dataset) named by its sha256."""
        return self.root / "artifacts" / sha256[:2] / f"{sha256}{suffix}"


def default_root() -> Path:
    """$APPLIANCE_WORKSPACE, else ./workspace."""
    return Path(os.environ.get(ENV_WORKSPACE, "workspace"))


def init_workspace(root: Path, overrides: list[str] | None = None) -> Workspace:
    """Create the workspace (idempotent): folders, config.toml with every default written out, audit store."""
    from appliance.audit import AuditStore

    root.mkdir(parents=True, exist_ok=True)
    for sub in ("reports", "artifacts"):
        (root / sub).mkdir(exist_ok=True)
    ws = Workspace(root=root, config=load_config(root / "config.toml", overrides))
    if not ws.config_path.exists():
        ws.config_path.write_text(render_toml(load_config(None, overrides, environ={})))
    AuditStore(ws.audit_path).close()
    return ws


def open_workspace(root: Path | None = None, overrides: list[str] | None = None, create: bool = True) -> Workspace:
    """Open a workspace, creating it with defaults on first use (and saying so on stderr) unless create=False."""
    root = root or default_root()
    if create and not (root / "config.toml").exists():
        print(f"appliance: creating workspace {root} with default settings", file=sys.stderr)
        return init_workspace(root, overrides)
    return Workspace(root=root, config=load_config(root / "config.toml", overrides))
