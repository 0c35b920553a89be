"""The model manifest and weight verification."""
import shutil
from pathlib import Path

import pytest

from appliance.models import DEFAULT_MODELS_DIR, ModelError, load_manifest, tree_sha256, verify_model
from conftest import flip_byte


def test_manifest_names_every_role_and_licence() -> None:
    manifest = load_manifest()
    assert {"generator", "test-generator", "embedder"} <= set(manifest.defaults)
    assert manifest.default("generator").name == "qwen2.5-coder-0.5b-instruct"
    for m in manifest.models:
        assert m.licence and m.sources and len(m.sha256) == 64
    emb = manifest.default("embedder")
    assert emb.is_dir and tree_sha256(emb.files) == emb.sha256


def test_installed_models_verify() -> None:
    for m in load_manifest().models:
        assert verify_model(m, full=True).exists()


def _private_models(tmp_path: Path, name: str) -> tuple[Path, object]:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy2(DEFAULT_MODELS_DIR / "manifest.toml", models / "manifest.toml")
    entry = load_manifest(models).get(name)
    shutil.copy2(DEFAULT_MODELS_DIR / entry.file, models / entry.file)
    return models, entry


def test_flipped_byte_in_a_weight_is_refused_even_after_a_cached_check(tmp_path: Path) -> None:
    models, entry = _private_models(tmp_path, "tinycoder-random")
    verify_model(entry, models)  # fills the cache
    flip_byte(models / entry.file)
    with pytest.raises(ModelError, match=entry.file):
        verify_model(entry, models)


def test_missing_model_says_what_to_do(tmp_path: Path) -> None:
    models, entry = _private_models(tmp_path, "tinycoder-random")
    (models / entry.file).unlink()
    with pytest.raises(ModelError, match="install.sh"):
        verify_model(entry, models)
    with pytest.raises(ModelError, match="unknown model"):
        load_manifest(models).get("gpt-5")
