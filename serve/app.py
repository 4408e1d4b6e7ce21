"""The recommendation service: an ASGI app (Starlette routes, pydantic schemas) over the followed champion.

    POST /recommend        {"history": [item ids, oldest first], "k": 10, "exclude_seen": true}
    POST /recommend/batch  {"users": [{"history": [...], "k": ...}, ...]}   one model call for all
    GET  /healthz          the process is alive
    GET  /readyz           200 only while a verified champion is loaded and the pointer was read lately
    GET  /version          what serves: version, manifest digest, served file, loaded at, pointer state
    GET  /metrics          Prometheus

Every answer names the version that scored it (the model is taken once per request). Bad input is a
4xx with a JSON body that says what is wrong: 400 malformed JSON (nesting past 200 levels included),
401 a missing or wrong bearer token (when one is configured), 404, 405, 408 a body that stops coming,
413 a body over the cap, 415 a body that is not JSON, 422 a well-formed request the schema refuses;
503 while no champion is loaded. docs/serving.md has the contract.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, ValidationError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from serve import metrics
from serve.champion import ChampionFollower
from serve.config import ServeConfig

LOG = logging.getLogger("serve")
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=128)] | StrictInt


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    history: list[ItemId] = Field(description="the user's recent item ids, oldest first")
    k: int = Field(10, ge=1, description="how many items to answer (at most the model's top K)")
    exclude_seen: bool | None = Field(None, description="leave out every item of `history` (default: the model's)")


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    users: list[RecommendRequest] = Field(min_length=1)


class HTTPError(Exception):
    def __init__(self, status: int, message: str, detail: list | None = None, headers: dict | None = None):
        self.status, self.message, self.detail, self.headers = status, message, detail, headers


def _json(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _error(exc: HTTPError) -> Response:
    body = {"error": exc.message} | ({"detail": exc.detail} if exc.detail else {})
    return _json(body, exc.status, exc.headers)


class Service:
    """The app's state: config, the followed champion, the poller thread."""

    def __init__(self, config: ServeConfig, follower: ChampionFollower):
        self.config = config
        self.follower = follower
        self.token = config.token()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.batcher = None
        if config.batching:
            from serve.batching import MicroBatcher

            self.batcher = MicroBatcher(config.batch_rows, config.batch_wait_ms / 1e3)

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._poller = threading.Thread(target=self._follow, name="champion-poller", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        if self.batcher is not None:
            self.batcher.close()
        metrics.worker_exited(os.getpid())

    def _follow(self) -> None:
        while True:
            try:
                self.follower.poll()
            except Exception:
                LOG.warning("pointer read failed; still serving %s: %s", self._serving(), self.follower.last_error)
            age = self.follower.pointer_age()
            metrics.POINTER_AGE.set(age if age is not None else float("inf"))
            if self._stop.wait(self.config.poll):
                return

    def _serving(self) -> str:
        return self.follower.current.version if self.follower.current else "nothing"

    # ---- request helpers -----------------------------------------------------------------
    def authorize(self, request: Request) -> None:
        if self.token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), self.token.encode()):
            raise HTTPError(401, "a bearer token is required: Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": 'Bearer realm="freshrec"'})  # fmt: skip

    async def body(self, request: Request) -> bytes:
        """The request body, at most `max_body` bytes, all of it within `read_timeout` seconds."""
        cap = self.config.max_body
        ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if ctype not in ("application/json", ""):
            raise HTTPError(415, f"send the body as application/json, not {ctype}")
        length = request.headers.get("content-length")
        if length is not None and int(length) > cap:
            raise HTTPError(413, f"the body is {length} bytes; the limit is {cap}: split a batch into smaller ones")
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.config.read_timeout):  # no task per read (asyncio.wait_for makes one)
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > cap:
                        raise HTTPError(413, f"the body is over {cap} bytes: split a batch into smaller ones",
                                        headers={"Connection": "close"})  # fmt: skip
                    chunks.append(chunk)
        except TimeoutError:
            raise HTTPError(408, f"the body did not arrive within {self.config.read_timeout:g} s (it stopped arriving)",
                            headers={"Connection": "close"}) from None  # fmt: skip
        return b"".join(chunks)

    def parse(self, raw: bytes, schema: type[BaseModel]):
        try:
            return schema.model_validate_json(raw)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            if any(e["type"] == "json_invalid" for e in errors):
                raise HTTPError(400, f"the body is not valid JSON: {errors[0]['msg']}") from None
            detail = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in errors[:20]]
            raise HTTPError(422, "the request does not match the schema (docs/serving.md)", detail) from None

    def check(self, user: RecommendRequest, model, where: str = "") -> None:
        if len(user.history) > self.config.max_history:
            raise HTTPError(422, f"{where}history has {len(user.history)} ids; the limit is "
                                 f"{self.config.max_history} (the model reads the newest {model.window})")  # fmt: skip
        if user.k > model.top_k:
            raise HTTPError(422, f"{where}k is {user.k}; the served model answers at most {model.top_k} "
                                 "(export.top_k in params.yaml)")  # fmt: skip
        if user.exclude_seen is False and model.exclude_seen:
            raise HTTPError(422, f"{where}exclude_seen is false, but the served graph always leaves out the items "
                                 "of the user's window (export.exclude_seen in params.yaml)")  # fmt: skip

    def model(self):
        model = self.follower.current
        if model is None:
            raise HTTPError(503, f"no champion loaded yet: {self.follower.last_error or 'starting'}",
                            headers={"Retry-After": str(int(self.config.poll))})  # fmt: skip
        return model

    async def answer(self, users: list[RecommendRequest], model) -> list[dict]:
        """Score `users` with `model`: one user through the batcher (when on), a big batch off the event
        loop (ORT releases the GIL), a small one here."""
        histories = [[str(i) for i in u.history] for u in users]
        enc = model.encode(histories)
        try:
            if self.batcher is not None and len(users) == 1:
                scores, idx = await self.batcher.score(model, enc.inputs)
            elif len(users) > 8:
                from starlette.concurrency import run_in_threadpool

                scores, idx = await run_in_threadpool(model.score, enc.inputs)
            else:
                scores, idx = model.score(enc.inputs)
        except Exception:  # a 500 the client can read, logged once, on a connection that stays usable
            LOG.exception("scoring %d histories with %s failed", len(users), model.version)
            raise HTTPError(500, f"scoring failed in version {model.version}: see the service log") from None
        return self._results(users, histories, enc, scores, idx, model)

    def _results(self, users, histories, enc, scores, idx, model) -> list[dict]:
        out = []
        for row, (user, history) in enumerate(zip(users, histories, strict=True)):
            exclude = None
            if user.exclude_seen or (user.exclude_seen is None and model.exclude_seen):
                exclude = set(history) if (enc.truncated[row] or not model.exclude_seen) else None
            items = model.top(scores[row], idx[row], user.k, exclude)
            out.append({
                "items": [{"item": i, "score": round(s, 6)} for i, s in items],
                "unknown": enc.unknown[row],
                "truncated": enc.truncated[row],
            })  # fmt: skip
        metrics.UNKNOWN_ITEMS.inc(sum(enc.unknown))
        return out


def create_app(config: ServeConfig | None = None, follower: ChampionFollower | None = None) -> Starlette:
    """The ASGI app. Without a follower, one is built on the registry the environment names (a cache
    folder per worker process), and polled from a thread for the app's lifetime."""
    config = config or ServeConfig.from_env()
    if follower is None:
        from tasks.registry import Registry
        from tasks.s3 import client

        registry = Registry(client(), config.bucket or _default_bucket(), config.model)
        cache = Path(config.cache_dir) if config.cache_dir else None
        follower = ChampionFollower(
            registry, cache / f"worker-{os.getpid()}" if cache else None, config.threads, config.stale_after
        )
    service = Service(config, follower)
    loaded: dict[str, tuple[str, str]] = {}

    def on_event(outcome: str, version: str) -> None:
        metrics.RELOADS.labels(outcome).inc()
        if outcome == "loaded" and follower.current is not None:
            if "now" in loaded:
                metrics.MODEL_INFO.labels(*loaded["now"]).set(0)
            loaded["now"] = (follower.current.version, follower.current.serve_file)
            metrics.MODEL_INFO.labels(*loaded["now"]).set(1)

    follower.on_event = on_event

    async def recommend(request: Request) -> Response:
        service.authorize(request)
        user = service.parse(await service.body(request), RecommendRequest)
        model = service.model()  # once: this model scores, and its version is the one answered
        service.check(user, model)
        (result,) = await service.answer([user], model)
        return _json({"version": model.version, **result})

    async def recommend_batch(request: Request) -> Response:
        service.authorize(request)
        batch = service.parse(await service.body(request), BatchRequest)
        if len(batch.users) > config.max_batch:
            raise HTTPError(422, f"{len(batch.users)} users in one batch; the limit is {config.max_batch}")
        model = service.model()
        for n, user in enumerate(batch.users):
            service.check(user, model, f"users[{n}]: ")
        results = await service.answer(batch.users, model)
        return _json({"version": model.version, "results": results})

    async def healthz(request: Request) -> Response:
        return _json({"status": "alive"})

    async def readyz(request: Request) -> Response:
        ok, why = follower.ready()
        return _json({"ready": ok, "reason": why}, 200 if ok else 503)

    async def version(request: Request) -> Response:
        model = follower.current
        age = follower.pointer_age()
        body = {
            "version": model.version if model else None,
            "manifest_sha256": model.manifest_sha256 if model else None,
            "serve_file": model.serve_file if model else None,
            "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(model.loaded_at)) if model else None,
            "window": model.window if model else None,
            "top_k": model.top_k if model else None,
            "exclude_seen": model.exclude_seen if model else None,
            "pointer_version": follower.pointer_version,
            "pointer_age_seconds": round(age, 3) if age is not None else None,
            "refused": [{"version": v, "reason": why} for (v, _), why in follower.refused.items()][-5:],
            "pid": os.getpid(),
        }
        return _json(body)

    async def prometheus(request: Request) -> Response:
        age = follower.pointer_age()
        metrics.POINTER_AGE.set(age if age is not None else float("inf"))
        data, ctype = metrics.exposition()
        return Response(data, media_type=ctype)

    @asynccontextmanager
    async def lifespan(app):
        service.start()
        try:
            yield
        finally:
            service.stop()

    routes = [
        Route("/recommend", recommend, methods=["POST"]),
        Route("/recommend/batch", recommend_batch, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        from starlette.exceptions import HTTPException

        if isinstance(exc, HTTPException):  # 404, 405 from routing
            return _json({"error": exc.detail}, exc.status_code, exc.headers)
        if isinstance(exc, ClientDisconnect):
            return Response(status_code=400)
        LOG.exception("unhandled error on %s", request.url.path)
        return _json({"error": "internal error: see the service log"}, 500)

    from starlette.exceptions import HTTPException

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPError: lambda request, exc: _error(exc),
            HTTPException: http_error,
            ClientDisconnect: http_error,
            Exception: http_error,
        },
    )
    app.state.service = service
    return MetricsMiddleware(app)


def _default_bucket() -> str:
    from tasks.params import load_params
    from tasks.s3 import bucket_name

    return bucket_name(load_params())


ROUTES = {"/recommend", "/recommend/batch", "/healthz", "/readyz", "/version", "/metrics"}


class MetricsMiddleware:
    """Latency by route and status code, and requests in flight, for every HTTP request."""

    def __init__(self, app):
        self.app = app
        self.state = app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in ROUTES else "other"
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        t0 = time.perf_counter()
        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            metrics.IN_FLIGHT.dec()
            metrics.REQUEST_SECONDS.labels(route, str(status["code"])).observe(time.perf_counter() - t0)
