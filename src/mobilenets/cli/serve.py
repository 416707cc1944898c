"""`mobilenets serve`: a classifier or detector behind HTTP (FastAPI on uvicorn) with micro-batching."""

from __future__ import annotations

import argparse
import os
import socket

from ..extras import require
from ..recipes import integer_at_least, number_in
from ..tasks.detection.decode import SCORE_THRESHOLD
from . import CommandError, add_model_source, model_source

API_KEY_VARIABLE = "MOBILENETS_API_KEY"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `serve`."""
    p = subparsers.add_parser("serve", help="serve a classifier or detector over HTTP, with a web page",
                              description="POST /v1/predict (image bytes, raw or multipart), GET /health, GET "
                                          "/metrics (Prometheus), GET / (a page to try it). Requests that arrive "
                                          "within --max-delay-ms share one model run. A checkpoint is exported "
                                          "to ONNX (dynamic batch) at start and runs on onnxruntime. SIGTERM or "
                                          "Ctrl-C: stop accepting, answer the requests in flight, exit.")
    add_model_source(p, "classifier or detector")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=integer_at_least(1, 65535), default=8000)  # 0 would serve where no one knows
    p.add_argument("--max-batch-size", type=integer_at_least(1, 1024), default=16, metavar="N",
                   help="images per model run at most (16; 1 turns batching off)")
    p.add_argument("--max-delay-ms", type=number_in(0, 1000, low_open=False), default=5.0, metavar="MS",
                   help="how long the first request of a batch waits for others (5)")
    p.add_argument("--prepare-threads", type=integer_at_least(1, 256), metavar="N",
                   help="threads decoding and resizing uploads (default: half the cores, at least 1; more slow the "
                        "model's runs)")
    p.add_argument("--api-key", metavar="KEY", help=f"require Authorization: Bearer KEY on every endpoint but "
                                                    f"/health and the page (default: ${API_KEY_VARIABLE} if set)")
    p.add_argument("--max-body-mb", type=number_in(0, 1024), default=20.0, metavar="MB",
                   help="largest upload (20)")
    p.add_argument("--max-pixels", type=integer_at_least(1), default=40_000_000, metavar="N",
                   help="largest image, read from its header before decoding (40,000,000)")
    p.add_argument("--cors", nargs="+", type=_origin, default=(), metavar="ORIGIN",
                   help="web origins allowed to call it (default: none)")
    p.add_argument("--top-k", type=integer_at_least(1), default=5, metavar="K", help="classes per answer (5)")
    p.add_argument("--threshold", type=number_in(0, 1, low_open=False), default=SCORE_THRESHOLD, metavar="S",
                   help=f"detector: lowest score kept ({SCORE_THRESHOLD})")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Load the model, then serve until SIGTERM or Ctrl-C."""
    require("fastapi", "serve", "mobilenets serve")
    require("uvicorn", "serve", "mobilenets serve")
    import torch
    import uvicorn

    from ..serve import create_app
    from ..serve.app import check_api_key

    api_key = os.environ.get(API_KEY_VARIABLE) if args.api_key is None else args.api_key
    try:
        if api_key is not None:
            check_api_key(api_key)
    except ValueError as e:
        given = "--api-key" if args.api_key is not None else f"${API_KEY_VARIABLE}"
        raise CommandError(f"{given}: {e} (give the key alone, or leave it out to serve without one)") from None
    _require_free_port(args.host, args.port)  # before loading the model, which can take a while
    # Requests are decoded and resized in parallel threads: one thread per torch operation avoids oversubscribing
    # the cores (the network runs on its own runtime's threads).
    torch.set_num_threads(1)
    app = create_app(model_source(args), max_batch_size=args.max_batch_size, max_delay_ms=args.max_delay_ms,
                     api_key=api_key,
                     max_body_bytes=int(args.max_body_mb * 1024 * 1024), max_pixels=args.max_pixels,
                     cors_origins=args.cors, top_k=args.top_k, threshold=args.threshold,
                     prepare_threads=args.prepare_threads)
    print(f"serving {model_source(args)} on http://{args.host}:{args.port}/ (Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, timeout_graceful_shutdown=30, log_level="warning")
    return 0


def _origin(text: str) -> str:
    """argparse type for --cors: a web origin (scheme://host[:port]) or *, as browsers send them."""
    if text != "*" and ("://" not in text or any(c.isspace() for c in text) or text.endswith("/")):
        raise argparse.ArgumentTypeError(f"must be a web origin such as https://example.com (or *), got {text!r}")
    return text


def _require_free_port(host: str, port: int) -> None:
    """CommandError when `host:port` cannot be bound (in use, or not an address of this machine)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT does not count
        try:
            probe.bind((host, port))
        except OSError as error:
            raise CommandError(f"--host {host} --port {port}: cannot listen there ({error.strerror})") from None
