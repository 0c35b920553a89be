"""The OpenAI-compatible endpoint: FastAPI + uvicorn over our own generator (not llama-cpp-python's server), so
that a served answer is rendered, retrieved and recorded exactly like an evaluated one: the same chat template and
prompt templates, the same retrieval with access groups, and a `requests` audit row per call.

- GET /v1/models: the loaded model (with its adapter, if any) and `rag`.
- POST /v1/chat/completions (stream or not): plain chat with the loaded model; with model `rag` the last user
  message is answered from the caller's documents (retrieval filtered by the key's groups) and the response carries
  `sources`.
- POST /v1/completions: raw text completion.

One model is loaded; requests queue on a lock (llama.cpp's context serves one generation at a time) and the time
each waited is recorded. Callers on localhost need no key when no keys file is given; otherwise every request
carries `Authorization: Bearer KEY` and gets the key's access groups.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from appliance.answering import Answerer
from appliance.errors import UsageError
from appliance.llm.base import Generation, SamplingParams
from appliance.serve.keys import LOCAL, ApiKey, match

RAG_MODEL = "rag"


@dataclass
class Service:
    """What the endpoints share: the generator, the answerer (rag), the keys, the audit run, and the queue lock."""

    gen: Any                                   # a LlamaCppGenerator (generate, stream, render_messages)
    answerer: Answerer | None                  # None: no index in the workspace, so no `rag` model
    keys: list[ApiKey] | None                  # None: no keys file (localhost only)
    run: Any                                   # the `serve` audit run
    defaults: SamplingParams
    lock: threading.Lock = field(default_factory=threading.Lock)
    audit_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def model_id(self) -> str:
        who = self.gen.identity
        return f"{who.model}+{who.adapter}" if who.adapter else who.model

    def caller(self, authorization: str | None) -> ApiKey | None:
        if self.keys is None:
            return ApiKey(LOCAL, "", ())
        if not authorization or not authorization.startswith("Bearer "):
            return None
        return match(self.keys, authorization[len("Bearer "):].strip())

    def record(self, **row: Any) -> None:
        who = self.gen.identity
        with self.audit_lock:
            self.run.append("requests", model_name=who.model, model_sha256=who.model_sha256, adapter_id=who.adapter,
                            adapter_sha256=who.adapter_sha256, **row)
            self.run.flush()


def _params(svc: Service, body: dict[str, Any]) -> SamplingParams:
    d = svc.defaults
    return SamplingParams(temperature=float(body.get("temperature", d.temperature) or 0.0),
                          top_p=float(body.get("top_p", d.top_p) or 1.0),
                          max_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or d.max_tokens),
                          seed=int(body.get("seed", d.seed) or 0))


def _stops(body: dict[str, Any], own: tuple[str, ...]) -> tuple[str, ...]:
    extra = body.get("stop") or []
    return own + ((extra,) if isinstance(extra, str) else tuple(extra))


def create_app(svc: Service):
    """The FastAPI application over a Service."""
    app = FastAPI(title="appliance", description=__doc__)

    def error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)

    def refuse(endpoint: str, requested: str, key_id: str, status: int, message: str, t0: float) -> JSONResponse:
        svc.record(request_id=uuid.uuid4().hex, key_id=key_id, endpoint=endpoint, requested_model=requested,
                   groups_json=[], prompt_sha256=None, prompt_tokens=None, completion_tokens=None,
                   latency_ms=round((time.perf_counter() - t0) * 1000, 2), queued_ms=0.0, stream=False,
                   status=status, error=message, answer_row_hash=None)
        return error(status, message, "authentication_error" if status == 401 else "invalid_request_error")

    @app.get("/v1/models")
    def models(authorization: str | None = Header(default=None)) -> Any:
        if svc.caller(authorization) is None:
            return error(401, "a valid API key is required (Authorization: Bearer KEY)", "authentication_error")
        names = [svc.model_id] + ([RAG_MODEL] if svc.answerer is not None else [])
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "appliance"}
                                           for n in names]}

    def handle(request_body: dict[str, Any], authorization: str | None, endpoint: str) -> Any:
        t0 = time.perf_counter()
        requested = str(request_body.get("model") or svc.model_id)
        key = svc.caller(authorization)
        if key is None:
            return refuse(endpoint, requested, "-", 401, "a valid API key is required (Authorization: Bearer KEY)", t0)
        if requested not in (svc.model_id, RAG_MODEL, svc.gen.identity.model):
            return refuse(endpoint, requested, key.id, 404, f"model {requested!r} is not served here "
                          f"(GET /v1/models)", t0)
        if requested == RAG_MODEL and (svc.answerer is None or endpoint != "chat"):
            return refuse(endpoint, requested, key.id, 400, "model 'rag' answers chat completions from an "
                          "indexed workspace", t0)
        stream = bool(request_body.get("stream"))
        try:
            params = _params(svc, request_body)
            if endpoint == "chat":
                messages = request_body.get("messages") or []
                if not messages or not all(isinstance(m, dict) and "content" in m for m in messages):
                    raise UsageError("messages: a list of {role, content}")
                messages = [{"role": m.get("role", "user"), "content": _text(m["content"])} for m in messages]
            else:
                prompt = request_body.get("prompt")
                if not isinstance(prompt, str) or not prompt:
                    raise UsageError("prompt: a non-empty string")
        except (UsageError, ValueError, TypeError) as e:
            return refuse(endpoint, requested, key.id, 400, str(e), t0)
        rid = ("chatcmpl-" if endpoint == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
        base = {"request_id": rid, "key_id": key.id, "endpoint": endpoint, "requested_model": requested,
                "groups_json": list(key.groups), "stream": stream}
        if requested == RAG_MODEL:
            return _rag(svc, messages, params, base, t0, stream)
        if endpoint == "chat":
            prompt, own_stops = svc.gen.render_messages(messages)
        else:
            own_stops = ()
        stops = _stops(request_body, own_stops)
        if stream:
            return EventSourceResponse(_streamed(svc, prompt, params, stops, base, t0, endpoint), ping=600)
        try:
            with svc.lock:
                queued = (time.perf_counter() - t0) * 1000
                g = svc.gen.generate(prompt, params, stops)
        except UsageError as e:
            return refuse(endpoint, requested, key.id, 400, str(e), t0)
        _log(svc, base, prompt, g, queued, t0)
        return _body(endpoint, rid, svc.model_id if requested != svc.gen.identity.model else requested, g.text,
                     g.finish_reason, g)

    async def dispatch(request: Request, authorization: str | None, endpoint: str) -> Any:
        """The JSON body checked here, the work done in a worker thread (it waits for the model)."""
        try:
            body = await request.json()
        except ValueError:
            return error(400, "the request body is not JSON")
        if not isinstance(body, dict):
            return error(400, "the request body must be a JSON object")
        return await run_in_threadpool(handle, body, authorization, endpoint)

    @app.post("/v1/chat/completions")
    async def chat(request: Request, authorization: str | None = Header(default=None)) -> Any:
        return await dispatch(request, authorization, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request, authorization: str | None = Header(default=None)) -> Any:
        return await dispatch(request, authorization, "completion")

    return app


def _text(content: Any) -> str:
    """A message's content: a string, or OpenAI's list of parts (their text parts joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    raise UsageError("message content must be text")


def _log(svc: Service, base: dict[str, Any], prompt: str, g: Generation, queued_ms: float, t0: float,
         answer_row_hash: str | None = None) -> None:
    svc.record(**base, prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest(), prompt_tokens=g.prompt_tokens,
               completion_tokens=g.completion_tokens, latency_ms=round((time.perf_counter() - t0) * 1000, 2),
               queued_ms=round(queued_ms, 2), status=200, error=None, answer_row_hash=answer_row_hash)


def _usage(g: Generation) -> dict[str, int]:
    return {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
            "total_tokens": g.prompt_tokens + g.completion_tokens}


def _body(endpoint: str, rid: str, model: str, text: str, finish: str, g: Generation, **extra: Any) -> dict[str, Any]:
    finish = "length" if finish == "length" else "stop"
    if endpoint == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        obj = "text_completion"
    return {"id": rid, "object": obj, "created": int(time.time()), "model": model, "choices": [choice],
            "usage": _usage(g), **extra}


def _chunk(endpoint: str, rid: str, model: str, piece: str | None, finish: str | None) -> str:
    if endpoint == "chat":
        delta = {"content": piece} if piece is not None else {}
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": piece or "", "finish_reason": finish, "logprobs": None}
        obj = "text_completion"
    return json.dumps({"id": rid, "object": obj, "created": int(time.time()), "model": model, "choices": [choice]})


def _streamed(svc: Service, prompt: str, params: SamplingParams, stops: tuple[str, ...], base: dict[str, Any],
              t0: float, endpoint: str) -> Iterator[str]:
    """Server-sent events of one streamed generation; the request row is written when it ends."""
    rid = base["request_id"]
    with svc.lock:
        queued = (time.perf_counter() - t0) * 1000
        final: Generation | None = None
        try:
            for item in svc.gen.stream(prompt, params, stops):
                if isinstance(item, Generation):
                    final = item
                else:
                    yield _chunk(endpoint, rid, svc.model_id, item, None)
        except UsageError as e:
            svc.record(**base, prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest(), prompt_tokens=None,
                       completion_tokens=None, latency_ms=round((time.perf_counter() - t0) * 1000, 2),
                       queued_ms=round(queued, 2), status=400, error=str(e), answer_row_hash=None)
            yield json.dumps({"error": {"message": str(e), "type": "invalid_request_error"}})
            return
    assert final is not None
    yield _chunk(endpoint, rid, svc.model_id, None, "length" if final.finish_reason == "length" else "stop")
    yield "[DONE]"
    _log(svc, base, prompt, final, queued, t0)


def _rag(svc: Service, messages: list[dict[str, str]], params: SamplingParams, base: dict[str, Any], t0: float,
         stream: bool) -> Any:
    """The last user message answered from the caller's documents (the answering path ask and eval use), with its
    sources; a streamed request gets the answer as one piece."""
    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "").strip()
    if not question:
        return JSONResponse({"error": {"message": "no user message to answer", "type": "invalid_request_error"}},
                            status_code=400)
    assert svc.answerer is not None
    with svc.lock:
        queued = (time.perf_counter() - t0) * 1000
        with svc.audit_lock:
            ans = svc.answerer.answer(question, "rag", "single", list(base["groups_json"]), run=svc.run)
            svc.run.flush()
    r = ans.result
    g = Generation(text=ans.text, prompt=r.steps[-1].gen.prompt if r.steps else question, prompt_tokens=r.prompt_tokens,
                   completion_tokens=r.completion_tokens, latency_ms=r.latency_ms, finish_reason="stop")
    _log(svc, base, g.prompt, g, queued, t0, ans.row_hash)
    sources = [p.record() | {"section": p.section} for p in sorted(ans.context.passages, key=lambda p: p.rank or 0)]
    body = _body("chat", base["request_id"], RAG_MODEL, ans.text, "stop", g, sources=sources)
    if not stream:
        return body
    def events() -> Iterator[str]:
        yield _chunk("chat", base["request_id"], RAG_MODEL, ans.text, None)
        yield json.dumps({**json.loads(_chunk("chat", base["request_id"], RAG_MODEL, None, "stop")),
                          "sources": sources})
        yield "[DONE]"
    return EventSourceResponse(events(), ping=600)
