"""Nothing reaches a hub: the offline switches are on for every library, and a hub id fails loudly."""
import os
import subprocess
import sys

import appliance  # noqa: F401  (importing the package applies the offline settings)
from appliance.offline import OFFLINE_ENV


def test_offline_variables_are_set_by_importing_the_package() -> None:
    assert all(os.environ[k] == v for k, v in OFFLINE_ENV.items())


def _connections_while(code: str) -> tuple[subprocess.CompletedProcess, int]:
    """Run `code` in a child whose hub endpoint is a local listener; how many connections it made there."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    seen, stop = [], threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            seen.append(1)
            conn.close()
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_ENV}
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{server.getsockname()[1]}"
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    finally:
        stop.set()
        thread.join()
        server.close()
    return proc, len(seen)


def test_a_hub_model_id_fails_loudly_without_trying_the_network() -> None:
    load = "transformers.AutoTokenizer.from_pretrained('bert-base-uncased')"
    proc, tried = _connections_while(f"import appliance, transformers\n{load}")
    assert proc.returncode != 0 and tried == 0  # failed, and never tried a connection
    # the same call without the appliance's settings does knock on the (local stand-in) hub: the test can tell
    proc, tried = _connections_while(f"import transformers\n{load}")
    assert proc.returncode != 0 and tried > 0


def test_the_embedder_loads_by_local_path() -> None:
    from sentence_transformers import SentenceTransformer

    from appliance.models import ModelCatalog

    _, path = ModelCatalog().verified_path("embedder")
    vec = SentenceTransformer(str(path), device="cpu").encode(["offline appliance"])
    assert vec.shape == (1, 384)
