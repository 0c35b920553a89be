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


def test_workspace_models_resolve_like_bundled_ones_and_are_verified(tmp_path: Path) -> None:
    from appliance.models import ModelCatalog

    catalog = ModelCatalog(DEFAULT_MODELS_DIR, tmp_path / "ws" / "models")
    made = tmp_path / "adapter"
    made.mkdir()
    (made / "adapter_config.json").write_text('{"r": 16}')
    (made / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    lineage = {"base": "smollm2-135m-instruct", "base_sha256": catalog.get("test-generator").sha256, "dataset": "d1"}
    entry = catalog.register("smol-adapter-1", "adapter", made, lineage, licence="Apache-2.0")
    assert not made.exists() and entry.origin == "workspace" and entry.lineage["dataset"] == "d1"
    again = ModelCatalog(DEFAULT_MODELS_DIR, tmp_path / "ws" / "models")  # a new process finds it by name
    found, path = again.verified_path("smol-adapter-1")
    assert found.sha256 == entry.sha256 and (path / "adapter_config.json").is_file()
    assert again.get("generator").name == "qwen2.5-coder-0.5b-instruct"  # roles still resolve to the manifest
    with pytest.raises(ModelError, match="exists already"):
        again.register("smollm2-135m-instruct", "generator", tmp_path, {}, licence="x")
    (path / "adapter_model.safetensors").write_bytes(b"\1" * 64)  # changed after registration
    with pytest.raises(ModelError, match="workspace registry"):
        again.verified_path("smol-adapter-1")


def test_the_hash_cache_lives_in_the_user_cache_not_the_checkout(tmp_path: Path, monkeypatch) -> None:
    from appliance.models import ModelCatalog

    monkeypatch.setenv("APPLIANCE_CACHE_DIR", str(tmp_path / "cache"))
    before = {p.name for p in DEFAULT_MODELS_DIR.iterdir()}
    ModelCatalog().verified_path("plumbing")
    assert (tmp_path / "cache" / "verified-models.json").is_file()
    assert {p.name for p in DEFAULT_MODELS_DIR.iterdir()} == before


def test_an_adapter_reference_names_its_strength_and_reads_back() -> None:
    from appliance.errors import UsageError
    from appliance.llm import adapter_ref, parse_adapter
    from appliance.models import check_name

    assert parse_adapter("dev-lora") == ("dev-lora", 1.0)
    assert parse_adapter("dev-lora@0.5") == ("dev-lora", 0.5)
    for name, scale in (("dev-lora", 1.0), ("dev-lora", 0.25), ("a.b_c-1", 2.0)):
        assert parse_adapter(adapter_ref(name, scale)) == (name, scale)
    assert adapter_ref("dev-lora", 1.0) == "dev-lora" and adapter_ref("dev-lora", 0.5) == "dev-lora@0.5"
    for bad in ("dev-lora@", "dev-lora@x", "dev-lora@0", "dev-lora@-1", "dev-lora@5"):
        with pytest.raises(UsageError):
            parse_adapter(bad)
    assert check_name("qwen2.5-coder-0.5b-instruct-lora-1a2b") == "qwen2.5-coder-0.5b-instruct-lora-1a2b"
    for bad in ("a@b", "../x", "a/b", "", "-x", "a b"):
        with pytest.raises(ModelError):
            check_name(bad)
