from pathlib import Path

import pytest

from appliance.config import ConfigError, load_config, render_toml


def test_defaults_file_env_and_set_apply_in_order(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[llm]\nn_ctx = 2048\nmax_tokens = 64\n")
    cfg = load_config(path, ["llm.max_tokens=32"], environ={"APPLIANCE__LLM__N_CTX": "1024", "APPLIANCE__LLM__SEED": "7"})
    assert (cfg.llm.n_ctx, cfg.llm.max_tokens, cfg.llm.seed) == (1024, 32, 7)
    assert cfg.llm.temperature == 0.0


@pytest.mark.parametrize("text", ["[llm]\nn_ctxx = 1\n", "[nope]\nx = 1\n", "[llm]\nn_ctx = \"big\"\n", "[llm\n"])
def test_bad_config_is_refused_with_the_key_named(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config(path, environ={})


def test_bad_override_and_env_are_refused() -> None:
    with pytest.raises(ConfigError, match="llm.temperature"):
        load_config(None, ["llm.temperature=hot"], environ={})
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(None, environ={"APPLIANCE__LLM__BOGUS": "1"})


def test_rendered_toml_round_trips(tmp_path: Path) -> None:
    cfg = load_config(None, ["llm.top_p=0.9", "models.generator=gemma-3-270m"], environ={})
    path = tmp_path / "config.toml"
    path.write_text(render_toml(cfg))
    assert load_config(path, environ={}) == cfg
