"""Who may see what: access groups come from the OS user and a root-owned mapping, never from the command line.

The end-to-end tests run the CLI as the unprivileged user `nobody` (setpriv), so they need root to run."""
from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from appliance.access import Entitlement, entitlement
from appliance.cli import main
from appliance.config import load_config
from appliance.errors import UsageError
from appliance.models import REPO_ROOT

SAMPLES = REPO_ROOT / "samples"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="changes file owners and runs as another user: needs root")
NOBODY = pwd.getpwnam("nobody")


def _mapping(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    path = folder / "access.toml"
    path.write_text(text)
    path.chmod(0o644)
    return path


def test_only_a_root_owned_mapping_grants_groups(tmp_path: Path) -> None:
    path = _mapping(tmp_path / "etc", '[users]\nnobody = ["board"]\n[os_groups]\nnogroup = ["hr"]\n')
    cfg = load_config(None, [f"access.map_file={path}"], environ={})
    assert entitlement(cfg, uid=0).groups is None  # root holds every group
    if os.geteuid() != 0:
        pytest.skip("the rest changes file owners: needs root")
    assert entitlement(cfg, uid=NOBODY.pw_uid).groups == {"board", "hr"}  # by user name and by OS group
    os.chown(path, NOBODY.pw_uid, -1)  # a file its user could have written does not count
    e = entitlement(cfg, uid=NOBODY.pw_uid)
    assert e.groups == frozenset() and "not owned by root" in e.source
    os.chown(path, 0, -1)
    path.chmod(0o666)
    assert "writable by others" in entitlement(cfg, uid=NOBODY.pw_uid).source
    path.chmod(0o644)
    path.parent.chmod(0o777)  # nor one in a folder anyone may replace it in
    assert "writable by others" in entitlement(cfg, uid=NOBODY.pw_uid).source
    cfg = load_config(None, [f"access.map_file={tmp_path / 'none.toml'}"], environ={})
    assert entitlement(cfg, uid=NOBODY.pw_uid).groups == frozenset()


def test_a_request_is_clamped_and_an_explicit_one_refused() -> None:
    e = Entitlement("eve", frozenset({"board"}), "test")
    assert e.clamp(["hr", "board"]) == ["board"] and e.clamp([]) == []  # never more than asked for
    with pytest.raises(UsageError, match="not entitled to access group.s. hr"):
        e.check(["hr", "board"])


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A workspace with the HR salary table (group hr) and a public document, in a folder `nobody` can reach."""
    top = Path(tempfile.mkdtemp(prefix="access-"))
    top.chmod(0o755)
    corpus = top / "corpus"
    corpus.mkdir()
    for name in ("salary-bands-2026.md", "information-security-policy.md", ".access.toml"):
        shutil.copy(SAMPLES / "corpus" / name, corpus / name)
    ws = top / "ws"
    assert main(["--workspace", str(ws), "ingest", str(corpus), "--json"]) == 0
    yield top, ws
    shutil.rmtree(top, ignore_errors=True)


def _as_nobody(top: Path, ws: Path, *args: str) -> subprocess.CompletedProcess:
    cache = top / "cache"
    cache.mkdir(exist_ok=True)
    os.chown(cache, NOBODY.pw_uid, NOBODY.pw_gid)
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE")}
    env |= {"APPLIANCE_CACHE_DIR": str(cache), "HOME": str(cache)}
    cmd = ["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}", "--init-groups",
           sys.executable, "-m", "appliance.cli", "--workspace", str(ws), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT)


QUERY = "salary band L4 maximum annual base salary"


@as_root
def test_another_local_user_cannot_read_the_workspace_at_all(shared) -> None:
    top, ws = shared
    assert ws.stat().st_mode & 0o777 == 0o700 and (ws / "audit.duckdb").stat().st_mode & 0o777 == 0o600
    proc = _as_nobody(top, ws, "search", QUERY, "--groups", "hr", "--json")
    assert proc.returncode != 0 and "820,000" not in proc.stdout
    assert "Permission denied" in proc.stderr or "permission" in proc.stderr.lower()


@as_root
def test_a_user_without_the_os_group_gets_no_confidential_chunk_however_asked(shared, tmp_path: Path) -> None:
    top, ws = shared
    own = top / "own"  # the workspace as that user's own copy: they can read its files, not its groups
    shutil.copytree(ws, own)
    subprocess.run(["chown", "-R", f"{NOBODY.pw_uid}:{NOBODY.pw_gid}", str(own)], check=True)
    etc = top / "etc"
    mapping = _mapping(etc, '[os_groups]\nboard = ["board"]\n')  # nobody is not in the board OS group
    cfg = ["--set", f"access.map_file={mapping}"]
    proc = _as_nobody(top, own, *cfg, "search", QUERY, "--groups", "hr", "--json")
    assert proc.returncode == 2 and "not entitled to access group(s) hr" in proc.stderr and "820,000" not in proc.stdout
    proc = _as_nobody(top, own, *cfg, "search", QUERY, "-k", "20", "--json")
    assert proc.returncode == 0, proc.stderr
    assert {h["file_name"] for h in json.loads(proc.stdout)["hits"]} == {"information-security-policy.md"}
    question = top / "q.jsonl"  # a question file that names the group itself
    question.write_text(json.dumps({"id": "s14", "question": "What is the maximum annual base salary in band L4?",
                                    "answer": "NOK 820,000", "evidence": "640,000 730,000 820,000", "kind": "table",
                                    "groups": ["hr"]}) + "\n")
    question.chmod(0o644)
    proc = _as_nobody(top, own, *cfg, "eval", "retrieval", "--questions", str(question), "-k", "20", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["recall_at_k"] == 0.0 and "820,000" not in proc.stdout
    mapping.write_text('[os_groups]\nnogroup = ["hr"]\n')  # the administrator grants it: now it is there
    proc = _as_nobody(top, own, *cfg, "search", QUERY, "--groups", "hr", "--json")
    assert proc.returncode == 0 and "salary-bands-2026.md" in {h["file_name"] for h in json.loads(proc.stdout)["hits"]}


def test_the_oracle_and_the_evidence_lookup_are_clamped_too(shared) -> None:
    from appliance.answering import Answerer
    from appliance.llm.fake import FakeGenerator
    from appliance.retrieval import Retriever
    from appliance.workspace import open_workspace

    _, ws = shared
    workspace = open_workspace(ws)
    eve = Entitlement("eve", frozenset({"board"}), "test")  # holds board, not hr
    retriever = Retriever(workspace.config, workspace.index_dir, entitled=eve)
    assert not any(c["file_name"] == "salary-bands-2026.md" for c, _ in retriever.visible(["hr", "board"]))
    answerer = Answerer(workspace.config, FakeGenerator([]), retriever)
    ctx, _ = answerer.context("Maximum salary in band L4?", "oracle", ["hr"], ("640,000 730,000 820,000",))
    assert ctx.missing_quotes and not any(p.chunk_id for p in ctx.passages)
    assert retriever.search(QUERY, k=20, groups=["hr"]).groups == []  # what was applied is what is recorded
