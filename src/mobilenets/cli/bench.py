"""`mobilenets bench`: CPU latency of zoo models per backend and batch, with reports and a Pareto plot."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from .. import cpu
from .._atomic import writable
from .._words import first_repeated
from ..deploy.bench import BACKENDS, benchmark, write_reports
from ..extras import MissingExtra
from ..models import list_models
from ..recipes import integer_at_least, path_text, resolution
from . import CommandError

MAX_RUNS = 1_000_000  # timed runs (or rounds) of a measurement: beyond this a typo
MAX_BATCH = 1024  # an input batch beyond this is a typo: 1024 x 3 x 224 x 224 floats are already 600 MB


def _names(allowed: tuple[str, ...] | list[str], what: str):
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        if unknown := [n for n in names if n not in allowed]:
            raise argparse.ArgumentTypeError(f"unknown {what} {unknown[0]!r}; choose from {', '.join(allowed)}")
        return _distinct(names, what)
    return parse


def _distinct(values: list, what: str) -> list:
    if not values:
        raise argparse.ArgumentTypeError(f"no {what} given")
    if (twice := first_repeated(values)) is not None:
        raise argparse.ArgumentTypeError(f"{what} {twice!r} given twice")
    return values


_batch_size = integer_at_least(1, MAX_BATCH)


def _batches(text: str) -> list[int]:
    return _distinct([_batch_size(n) for n in text.split(",")], "batch size")


def _threads(text: str) -> int:
    return integer_at_least(1, 4 * cpu.available_cores())(text)  # oversubscription is worth measuring; a typo is not


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `bench`."""
    p = subparsers.add_parser("bench", help="CPU latency per model, backend and batch",
                              description="Median and p90 latency of each model x backend x batch (warm-up "
                                          "excluded), beside the MAdds-bound limit of this machine; writes "
                                          "bench.csv, bench.md and pareto.png.")
    p.add_argument("--models", type=_names(list_models(), "model"), default=list_models(), metavar="M,M")
    p.add_argument("--backends", type=_names(BACKENDS, "backend"), metavar="B,B",
                   default=["eager", "channels_last", "torchscript", "onnxruntime"],
                   help=f"any of {', '.join(BACKENDS)}")
    p.add_argument("--batch", type=_batches, default=[1], metavar="N,N")
    p.add_argument("--resolution", type=resolution, default=224, metavar="R")
    p.add_argument("--threads", type=_threads, metavar="N", help="CPU threads (default: PyTorch's)")
    p.add_argument("--runs", type=integer_at_least(1, MAX_RUNS), default=30, metavar="N",
                   help="timed runs per measurement")
    p.add_argument("--rounds", type=integer_at_least(1, MAX_RUNS), default=5, metavar="N",
                   help="interleaved rounds the runs are split into (backends take turns in each)")
    p.add_argument("--output", type=path_text, default="bench", metavar="DIR")
    p.add_argument("--json", action="store_true",
                   help="print the measurements and the CPU's description as one JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Measure, write the reports, print the table under the CPU's summary line (or JSON, with the CPU)."""
    writable(args.output, folder=True)  # before the minutes of timing
    try:
        results = benchmark(args.models, args.backends, args.batch, resolution=args.resolution,
                            threads=args.threads, runs=args.runs, rounds=args.rounds, progress=not args.json)
    except MissingExtra:
        raise
    except ImportError as e:
        raise CommandError(f"{e}: the onnxruntime backends need pip install 'mobilenets[deploy]'") from None
    written = write_reports(results, Path(args.output), f"mobilenets bench, {args.resolution}px")
    if args.json:
        print(json.dumps({"cpu": cpu.describe().to_dict(), "results": [asdict(r) for r in results],
                          "files": [str(p) for p in written]}))
    else:
        print((Path(args.output) / "bench.md").read_text())
    return 0
