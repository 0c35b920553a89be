"""The OpenAI-compatible server, driven by the `openai` client over HTTP: uvicorn in a thread, the real llama.cpp
test model, the sample corpus indexed with one confidential document, API keys mapped to access groups."""
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pytest

from appliance.cli import main
from appliance.models import REPO_ROOT
from appliance.workspace import open_workspace

MODEL = "smollm2-135m-instruct"
SECRET = "hr-salary-bands.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A running server with keys `public` (no groups) and `hr` (group hr); yields (base URL, keys, workspace)."""
    import uvicorn

    from appliance.serve.app import create_app
    from appliance.serve.keys import add_key
    from appliance.serve.server import service

    root = tmp_path_factory.mktemp("servews") / "ws"
    corpus = tmp_path_factory.mktemp("corpus") / "corpus"
    shutil.copytree(REPO_ROOT / "samples" / "corpus", corpus)
    secret = tmp_path_factory.mktemp("secret") / SECRET
    secret.write_text("# Salary bands\n\nThe salary band for a senior technician is 4,150 to 5,020 Zorkmids a "
                      "month, reviewed every March by the works council.\n")
    assert main(["--workspace", str(root), "ingest", str(corpus), "--json"]) == 0
    assert main(["--workspace", str(root), "ingest", str(secret), "--groups", "hr", "--json"]) == 0
    keys_file = tmp_path_factory.mktemp("keys") / "keys.toml"
    keys = {"public": add_key(keys_file, "public", []), "hr": add_key(keys_file, "hr", ["hr"])}
    ws = open_workspace(root, [f"models.generator={MODEL}", "llm.max_tokens=24"])
    port = free_port()
    with ws.run("serve", "test") as run:
        svc = service(ws, run, keys_file=keys_file)
        srv = uvicorn.Server(uvicorn.Config(create_app(svc), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        while not srv.started:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1", keys, root, svc
        srv.should_exit = True
        thread.join(10)


def client(base: str, key: str):
    from openai import OpenAI

    return OpenAI(base_url=base, api_key=key, max_retries=0, timeout=120)


def test_models_chat_stream_and_completions_through_the_openai_client(server) -> None:
    base, keys, _, svc = server
    c = client(base, keys["public"])
    assert {m.id for m in c.models.list().data} == {MODEL, "rag"}
    r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8)
    assert r.choices[0].message.content and r.usage.completion_tokens > 0 and r.model == MODEL
    pieces = [ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, stream=True)]
    assert "".join(pieces).strip() == r.choices[0].message.content   # greedy: the same answer, streamed
    t = c.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=4)
    assert t.choices[0].text is not None and t.usage.prompt_tokens > 0


def test_rag_answers_with_sources_and_a_key_sees_only_its_groups(server) -> None:
    base, keys, _, _ = server
    question = [{"role": "user", "content": "What is the salary band for a senior technician?"}]
    hr = client(base, keys["hr"]).chat.completions.create(model="rag", messages=question)
    public = client(base, keys["public"]).chat.completions.create(model="rag", messages=question)
    hr_files = {s["file"] for s in hr.model_extra["sources"]}
    public_files = {s["file"] for s in public.model_extra["sources"]}
    assert SECRET in hr_files and SECRET not in public_files and public_files


def test_bad_requests_get_clear_errors_and_every_request_is_an_audit_row(server) -> None:
    from openai import APIStatusError

    base, keys, root, svc = server
    with pytest.raises(APIStatusError) as e:
        client(base, "sk-wrong").chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 401
    with pytest.raises(APIStatusError) as e:
        client(base, keys["public"]).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "word " * 5000}])
    assert e.value.status_code == 400 and "n_ctx" in str(e.value)
    with pytest.raises(APIStatusError) as e:
        client(base, keys["public"]).chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 404
    c = client(base, keys["public"])
    with ThreadPoolExecutor(4) as pool:   # concurrent requests queue on the one loaded model
        outs = list(pool.map(lambda i: c.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"Count to {i}."}], max_tokens=6), range(4)))
    assert all(o.choices[0].message.content is not None for o in outs)
    svc.run.flush()
    svc.run.store.close()
    con = duckdb.connect(str(root / "audit.duckdb"), read_only=True)
    rows = con.execute("SELECT key_id, status, model_sha256, prompt_sha256 IS NOT NULL, queued_ms FROM requests "
                       "WHERE run_id = ?", [svc.run.run_id]).fetchall()
    con.close()
    statuses = [r[1] for r in rows]
    assert statuses.count(401) >= 1 and statuses.count(400) >= 1 and statuses.count(404) >= 1
    ok = [r for r in rows if r[1] == 200]
    assert len(ok) >= 4 and all(r[2] == svc.gen.identity.model_sha256 and r[3] for r in ok)
    assert {r[0] for r in ok} <= {"public", "hr"}
    assert max(r[4] for r in ok) > 0   # someone waited for the model


def test_a_non_loopback_address_needs_keys(tmp_path: Path, capsys) -> None:
    code = main(["--workspace", str(tmp_path / "ws"), "serve", "--host", "0.0.0.0", "--model", MODEL])
    assert code == 2 and "--keys" in capsys.readouterr().err
