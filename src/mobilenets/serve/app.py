"""The HTTP server: `create_app` returns a FastAPI (ASGI) app that classifies or detects uploaded images, with
dynamic micro-batching, Prometheus metrics, a web page, and limits that keep bad input from hurting it.

Endpoints: `POST /v1/predict` (image bytes as the raw body or a multipart file), `GET /health`, `GET /metrics`
(Prometheus text), `GET /` (the page). With an API key, every endpoint but `/health` and the page itself needs
`Authorization: Bearer KEY` (the page asks for the key and sends it). Every refused request is a 4xx with a
one-line JSON body `{"error": ...}`; a failure of the server's own (e.g. of the model) a 500 with one, its
traceback in the server's log; the server keeps answering the others.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at definition time, and
# `Request` is imported inside create_app (FastAPI is an optional dependency).
import asyncio
import gc
import hmac
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .. import cpu
from ..data.folder import DataError, TooManyPixels, decode_rgb
from .batching import MicroBatcher
from .servable import Servable, load_servable

IMAGE_TYPES = ("image/", "application/octet-stream")
MAX_BODY_BYTES = 20 * 1024 * 1024
WARM_EVERY_SIZE_UP_TO = 16  # batch sizes run at start-up, each twice (and the largest, if larger)
MAX_PIXELS = 40_000_000
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
log = logging.getLogger(__name__)


class RequestError(Exception):
    """A request the server refuses: its HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Metrics:
    """The Prometheus series of one app, in a registry of its own (several apps can live in one process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("mobilenets_requests", "Prediction requests by HTTP status", ["status"],
                                registry=self.registry)
        self.latency = Histogram("mobilenets_request_seconds", "Prediction request latency, body read to answer",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("mobilenets_batch_size", "Images per model run", buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        self.queue_depth = Gauge("mobilenets_queue_depth", "Images waiting for a model run", registry=self.registry)


def create_app(model: Servable | str | Path, *, max_batch_size: int = 16, max_delay_ms: float = 5.0,
               api_key: str | None = None, max_body_bytes: int = MAX_BODY_BYTES, max_pixels: int = MAX_PIXELS,
               cors_origins: list[str] | tuple[str, ...] = (), top_k: int = 5, threshold: float | None = None,
               prepare_threads: int | None = None) -> Any:
    """The ASGI app serving `model` (a Servable, or a checkpoint / `.onnx` / `.pte` path for `load_servable`).

    Requests arriving within `max_delay_ms` share a model run of up to `max_batch_size` images; uploads are decoded
    and prepared by `prepare_threads` threads (default `default_prepare_threads()`); bodies over `max_body_bytes`
    and images over `max_pixels` (read from the header, before decoding) are refused; `api_key` (if given) is
    required as a bearer token; `cors_origins` allows those web origins (none by default)."""
    prepare_threads = default_prepare_threads() if prepare_threads is None else prepare_threads
    if prepare_threads < 1:
        raise ValueError(f"prepare_threads must be at least 1, got {prepare_threads}")
    if api_key is not None:
        check_api_key(api_key)
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    servable = model if isinstance(model, Servable) else load_servable(model, top_k=top_k, threshold=threshold)
    metrics = _Metrics()

    def run_batch(items: list[tuple[torch.Tensor, Any]]) -> list[dict[str, Any]]:
        return servable.answer(torch.stack([x for x, _ in items]), [context for _, context in items])

    batcher = MicroBatcher(run_batch, max_batch_size=max_batch_size, max_delay_ms=max_delay_ms,
                           on_batch=metrics.batch_size.observe, on_queue=metrics.queue_depth.set)

    starting = asyncio.Lock()

    async def start() -> None:
        async with starting:
            if app.state.preparing is None:  # set only once the batcher runs: a failed start is tried again
                await batcher.start(warm_up=_warm_up_batches(servable, max_batch_size))
                app.state.preparing = ThreadPoolExecutor(prepare_threads, thread_name_prefix="mobilenets-prepare")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await start()
        # Everything loaded so far (torch, the model, the web stack) lives as long as the process: exempt it from
        # the garbage collector, whose full passes over it would otherwise stall every request for ~0.2 s.
        gc.freeze()
        try:
            yield
        finally:
            preparing, app.state.preparing = app.state.preparing, None
            await batcher.stop()  # uvicorn stops accepting first, then waits for requests in flight: answer them
            preparing.shutdown()

    app = FastAPI(title="mobilenets", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.preparing = None
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.state.servable, app.state.batcher = servable, batcher

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return JSONResponse({"error": str(error)}, status_code=error.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def not_served(request: Request, error: HTTPException) -> JSONResponse:  # 404, 405: the same JSON shape
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise RequestError(401, "missing or wrong API key (send Authorization: Bearer KEY)")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", **servable.describe()}

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        authorize(request)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")

    @app.post("/v1/predict")
    async def predict(request: Request) -> JSONResponse:
        started = time.perf_counter()
        try:
            if app.state.preparing is None:  # mounted in another app, which does not run a mounted app's lifespan
                await start()
            authorize(request)
            with batcher.expecting():
                data = await _image_bytes(request, max_body_bytes)
                x, context, (width, height) = await asyncio.get_running_loop().run_in_executor(
                    app.state.preparing, _prepare, servable, data, max_pixels)
            answer = await batcher.submit((x, context))
        except RequestError as error:
            metrics.requests.labels(str(error.status)).inc()
            raise
        except ClientDisconnect:  # the client left during the upload: nothing failed here, and no one to answer
            metrics.requests.labels("499").inc()
            raise RequestError(499, "the client disconnected during the upload") from None
        except Exception:
            log.exception("POST /v1/predict failed")
            metrics.requests.labels("500").inc()
            raise RequestError(500, "internal error (the server's log has the traceback)") from None
        latency = time.perf_counter() - started
        metrics.requests.labels("200").inc()
        metrics.latency.observe(latency)
        return JSONResponse({"task": servable.task, "width": width, "height": height, **answer,
                             "latency_ms": round(latency * 1000, 2)})

    return app


def check_api_key(key: str) -> None:
    """ValueError for a key no client could send: empty, or with white space around it (a newline read from a
    file, say), which a bearer token never carries."""
    if not key.strip() or key != key.strip():
        raise ValueError("the API key is empty or begins or ends with white space")


def default_prepare_threads() -> int:
    """Half of this process's cores, at least one: the model's runtime works on the cores with its own threads, and
    more threads preparing uploads beside it slow its runs more than they speed up decoding (docs/benchmarks.md)."""
    return max(1, cpu.available_cores() // 2)


def _warm_up_batches(servable: Servable, max_batch_size: int) -> list[list[tuple[torch.Tensor, Any]]]:
    """A blank image in batches of the largest size the network will run, then of each size up to
    WARM_EVERY_SIZE_UP_TO, twice each. A runtime grows its memory and plans it for an input shape on its first
    runs (onnxruntime: the second run at a new batch size can take several times as long), which would otherwise
    fall on requests as their batches reach new sizes; the largest batch grows the memory once for all, and the
    small sizes, those busy minutes reach most, are then planned too (a cost that grows with the square of the
    sizes warmed, hence the bound)."""
    blank = Image.new("RGB", (64, 64), (128, 128, 128))
    example = servable.prepare(blank, blank.size)
    largest = min(max_batch_size, servable.fixed_batch or max_batch_size)
    sizes = [largest, *range(1, min(largest, WARM_EVERY_SIZE_UP_TO + 1))]
    return [[example] * size for size in sizes for _ in range(2)]


def _prepare(servable: Servable, data: bytes, max_pixels: int) -> tuple[torch.Tensor, Any, tuple[int, int]]:
    """The uploaded image decoded (at the smallest scale `servable` needs) and prepared: its network input, the
    context `answer` needs, and its full size."""
    try:
        image, size = decode_rgb(data, max_pixels=max_pixels, scale_for=servable.scale_for)
    except TooManyPixels as error:
        raise RequestError(413, f"the upload: {error}") from None
    except DataError as error:
        raise RequestError(400, f"the upload: {error}") from None
    return *servable.prepare(image, size), size


async def _image_bytes(request: Any, limit: int) -> bytes:
    """The uploaded image: the raw body (an image/* or octet-stream type) or the first file of a multipart form,
    read up to `limit` bytes (RequestError 413 beyond, before reading the rest)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    multipart = kind == "multipart/form-data"
    if not multipart and not kind.startswith(IMAGE_TYPES):
        raise RequestError(415, f"content type {kind or '(none)'!r} is not an image: send the image bytes with an "
                                f"image/* or application/octet-stream type, or as a multipart/form-data file")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the body is {int(declared):,} bytes, over the limit of {limit:,}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestError(413, f"the body is over the limit of {limit:,} bytes")
    if multipart:
        body = await _first_file(request.headers, bytes(body))
    if not body:
        raise RequestError(400, "the body is empty: send the image's bytes")
    return bytes(body)


async def _first_file(headers: Any, body: bytes) -> bytes:
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream():
        yield body

    try:
        form = await MultiPartParser(headers, stream(), max_files=1, max_fields=10).parse()
    except MultiPartException as error:
        raise RequestError(400, f"the multipart form cannot be read: {error}") from None
    files = [value for _, value in form.multi_items() if hasattr(value, "read")]
    if not files:
        raise RequestError(400, "the multipart form holds no file: send the image as a file field")
    return await files[0].read()
