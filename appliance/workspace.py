"""Where a workspace keeps things: config.toml, audit.duckdb, index/, reports/, models/ (what later rungs make,
registered with their lineage) and artifacts/ (content-addressed)."""
from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.config import Config, load_config, render_toml
from appliance.models import ModelCatalog

if TYPE_CHECKING:
    from appliance.audit import Run

ENV_WORKSPACE = "APPLIANCE_WORKSPACE"


@dataclass(frozen=True)
class Workspace:
    """A workspace directory and its loaded configuration; `created` when this call made it."""

    root: Path
    config: Config
    created: bool = False

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

    @property
    def models_dir(self) -> Path:
        """Models this workspace made (adapters, merged and quantized GGUFs) and their registry."""
        return self.root / "models"

    @cached_property
    def models(self) -> ModelCatalog:
        """The one model resolver: the bundled manifest's models and this workspace's own."""
        return ModelCatalog(self.config.models_dir, self.models_dir)

    def artifact_path(self, sha256: str, suffix: str = "") -> Path:
        """Content-addressed location for an artifact (adapter, export, dataset) named by its sha256."""
        return self.root / "artifacts" / sha256[:2] / f"{sha256}{suffix}"

    @contextmanager
    def run(self, kind: str, command: str = "") -> Iterator[Run]:
        """A new audit run of `kind` recording the command (default: this process's), the configuration and the
        appliance version; closed ok, or failed with the error, or left resumable on Ctrl-C / cancel."""
        from appliance import __version__
        from appliance.audit import AuditStore

        with AuditStore(self.audit_path) as store, store.run(kind, command or this_command(), self.config.to_dict(),
                                                            __version__) as run:
            yield run

    @contextmanager
    def resumed_run(self, run_id: str) -> Iterator[Run]:
        """A killed run reopened to go on where it stopped, closed like `run()`."""
        from appliance.audit import AuditStore

        with AuditStore(self.audit_path) as store, store.resumed(run_id) as run:
            yield run


def this_command() -> str:
    """This process's command line, as a run records it."""
    return shlex.join(["appliance" if Path(sys.argv[0]).name == "appliance" else sys.argv[0], *sys.argv[1:]])


def default_root() -> Path:
    """$APPLIANCE_WORKSPACE, else ./workspace."""
    return Path(os.environ.get(ENV_WORKSPACE, "workspace"))


def init_workspace(root: Path, overrides: list[str] | None = None) -> Workspace:
    """Create the workspace (idempotent): folders, config.toml with every default written out, audit store. A new
    workspace is its owner's alone (0700): other local users can read neither the index (confidential chunks) nor
    the audit store; they are served through the appliance (its server's API keys), not its files."""
    from appliance.audit import AuditStore

    created = not (root / "config.toml").exists()
    root.mkdir(parents=True, exist_ok=True)
    if created:
        root.chmod(0o700)
    for sub in ("reports", "artifacts"):
        (root / sub).mkdir(exist_ok=True)
    ws = Workspace(root=root, config=load_config(root / "config.toml", overrides), created=created)
    if not ws.config_path.exists():
        ws.config_path.write_text(render_toml(load_config(None, overrides, environ={})))
    AuditStore(ws.audit_path).close()
    if created:
        ws.audit_path.chmod(0o600)
    return ws


def open_workspace(root: Path | None = None, overrides: list[str] | None = None, create: bool = True) -> Workspace:
    """Open a workspace, creating it with defaults on first use unless create=False (`created` says so)."""
    root = root or default_root()
    if create and not (root / "config.toml").exists():
        return init_workspace(root, overrides)
    return Workspace(root=root, config=load_config(root / "config.toml", overrides))
