"""`mobilenets predict`: class names and probabilities for images; unreadable ones are reported, not fatal."""

from __future__ import annotations

import argparse
import json
import sys

from ..recipes import path_text
from ..tasks.classification.predict import predict
from . import CommandError, add_model_source, model_source


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `predict`."""
    p = subparsers.add_parser("predict", help="classify images with a trained classifier",
                              description="Print the top-k classes of each image. An unreadable image gets a "
                                          "one-line error and exit status 1; the others are still predicted.")
    add_model_source(p)
    p.add_argument("images", type=path_text, nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--topk", type=int, default=5, metavar="K")
    p.add_argument("--json", action="store_true", help="one JSON object per image (JSON lines)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Predict every image; print results (or JSON lines) on stdout and one line per failure on stderr."""
    if args.topk < 1:
        raise CommandError(f"--topk must be >= 1, got {args.topk}")
    results = predict(model_source(args), args.images, topk=args.topk)
    failed = 0
    for result in results:
        if result.error is not None:
            failed += 1
            print(f"mobilenets: error: {result.error}", file=sys.stderr)
        elif args.json:
            print(json.dumps(result.to_dict()))
        else:
            best = ", ".join(f"{c} {p:.3f}" for c, p in zip(result.classes, result.probabilities, strict=True))
            print(f"{result.path}: {best}")
    return 1 if failed else 0
