"""Nothing reaches a hub: the offline switches are on for every library, and a hub id fails loudly."""
import os
import subprocess
import sys

import pytest

import appliance  # noqa: F401  (importing the package applies the offline settings)
from appliance.offline import OFFLINE_ENV


def test_offline_variables_are_set_by_importing_the_package() -> None:
    assert all(os.environ[k] == v for k, v in OFFLINE_ENV.items())


def test_a_hub_model_id_fails_loudly_instead_of_downloading() -> None:
    code = ("import appliance, transformers\n"
            "transformers.AutoTokenizer.from_pretrained('bert-base-uncased')")
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_ENV}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode != 0
    assert "offline" in proc.stderr.lower() or "local" in proc.stderr.lower()


def test_the_embedder_loads_by_local_path() -> None:
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer

    from appliance.models import ModelCatalog

    _, path = ModelCatalog().verified_path("embedder")
    vec = SentenceTransformer(str(path), device="cpu").encode(["offline appliance"])
    assert vec.shape == (1, 384)
