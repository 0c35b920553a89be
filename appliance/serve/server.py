"""`appliance serve`: load one model (and adapter), open a `serve` audit run, and run the endpoint under uvicorn
until interrupted. Localhost by default; any other address needs a keys file."""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from appliance.answering import Answerer
from appliance.errors import UsageError
from appliance.llm.base import SamplingParams
from appliance.progress import Progress
from appliance.resume import process_event
from appliance.serve.app import Service, create_app
from appliance.serve.keys import load_keys
from appliance.workspace import Workspace


def loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def service(ws: Workspace, run: Any, model: str | None = None, adapter: str | None = None,
            keys_file: Path | None = None, generator: Any = None) -> Service:
    """The Service the endpoints run on: the generator, the answerer when the workspace has an index."""
    from appliance.llm import load_generator
    from appliance.retrieval import Retriever

    keys = load_keys(keys_file) if keys_file else None
    gen = generator or load_generator(ws, model, adapter)
    retriever = Retriever(ws.config, ws.index_dir) if ws.index_dir.is_dir() else None
    answerer = Answerer(ws.config, gen, retriever) if retriever and retriever.index.count() else None
    return Service(gen=gen, answerer=answerer, keys=keys, run=run, defaults=SamplingParams.from_config(ws.config.llm))


def serve(ws: Workspace, model: str | None, adapter: str | None, host: str, port: int, keys_file: Path | None,
          progress: Progress | None = None, command: str = "") -> None:
    """Serve until interrupted (Ctrl-C closes the run)."""
    import uvicorn

    progress = progress or Progress()
    if not loopback(host) and keys_file is None:
        raise UsageError(f"--host {host} is reachable from other machines: give --keys FILE (`appliance apikey` "
                         f"makes keys, each mapped to access groups)")
    with ws.run("serve", command) as run:
        svc = service(ws, run, model, adapter, keys_file)
        who = svc.gen.identity
        run.event("serve_start", **process_event(command, host=host, port=port, model=who.model,
                                                 model_sha256=who.model_sha256, adapter=who.adapter,
                                                 adapter_sha256=who.adapter_sha256, rag=svc.answerer is not None,
                                                 keys=[k.id for k in svc.keys] if svc.keys is not None else None))
        run.flush()
        run.store.close()   # hold the file only while writing: auditors can read the store while it serves
        progress.note(f"serving {svc.model_id}" + (" and rag" if svc.answerer else "") + f" on http://{host}:{port}/v1 "
                      f"({'keys from ' + str(keys_file) if keys_file else 'localhost, no keys'}); run {run.run_id}")
        try:
            uvicorn.run(create_app(svc), host=host, port=port, log_level="warning", workers=1)
        finally:
            run.event("serve_stop")
