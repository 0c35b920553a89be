import re
from pathlib import Path

import pytest

from appliance.config import ConfigError, load_config, render_toml


def test_defaults_file_env_and_set_apply_in_order(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[llm]\nn_ctx = 2048\nmax_tokens = 64\n")
    cfg = load_config(path, ["llm.max_tokens=32"], environ={"APPLIANCE__LLM__N_CTX": "1024", "APPLIANCE__LLM__SEED": "7"})
    assert (cfg.llm.n_ctx, cfg.llm.max_tokens, cfg.llm.seed) == (1024, 32, 7)
    assert cfg.llm.temperature == 0.0


@pytest.mark.parametrize("text,named", [("[llm]\nn_ctxx = 1\n", "llm.n_ctxx"), ("[nope]\nx = 1\n", "[nope]"),
                                        ("[llm]\nn_ctx = \"big\"\n", "llm.n_ctx"), ("[llm\n", "not valid TOML"),
                                        ("[retrieval]\nmode = \"semantic\"\n", "retrieval.mode"),
                                        ("[ingest]\nmax_tokens = [1, 2]\n", "ingest.max_tokens"),
                                        ("[ladder]\nadapter_scales = [1.0, 0]\n", "ladder.adapter_scales"),
                                        ("[ladder]\nadapter_scales = []\n", "ladder.adapter_scales"),
                                        ("[sdg]\nrewrites = -1\n", "sdg.rewrites"),
                                        ("[sdg]\nattempts = 0\n", "sdg.attempts")])
def test_bad_config_is_refused_with_the_key_named(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_config(path, environ={})


def test_lists_and_optional_values_are_coerced_or_refused_by_key() -> None:
    from appliance.config import _coerce

    hints = {"names": list[str], "limit": int | None}
    assert _coerce("s", "names", hints["names"], "a, b,c") == ["a", "b", "c"]
    assert _coerce("s", "names", hints["names"], ["x"]) == ["x"]
    assert _coerce("s", "limit", hints["limit"], "12") == 12
    assert _coerce("s", "limit", hints["limit"], "none") is None and _coerce("s", "limit", hints["limit"], None) is None
    with pytest.raises(ConfigError, match="s.limit"):
        _coerce("s", "limit", hints["limit"], "many")
    with pytest.raises(ConfigError, match="s.names"):
        _coerce("s", "names", list[int], "1,x")


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
