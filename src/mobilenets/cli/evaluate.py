"""`mobilenets eval`: accuracy, per-class precision/recall and confusion.png of a trained classifier."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .._atomic import writable
from ..recipes import integer_at_least, path_text
from ..tasks.classification.evaluate import evaluate
from . import CommandError, add_model_source, model_source


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `eval`."""
    p = subparsers.add_parser("eval", help="evaluate a trained classifier",
                              description="Top-1, top-5, per-class precision/recall and a confusion matrix. "
                                          "Without --data: the run's own validation split.")
    add_model_source(p)
    p.add_argument("--data", metavar="DIR", help="ImageFolder (its val/ if present, else all of it)")
    p.add_argument("--output", type=path_text, metavar="DIR",
                   help="where confusion.png goes (default: beside the checkpoint)")
    p.add_argument("--batch-size", type=integer_at_least(1), default=128, metavar="N")
    p.add_argument("--workers", type=integer_at_least(0), default=2, metavar="N",
                   help="processes loading images (2; 0: in this one)")
    p.add_argument("--json", action="store_true", help="one JSON object with top1, top5, per_class, ...")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, draw confusion.png, print a report or one JSON object."""
    checkpoint = Path(model_source(args))
    if not checkpoint.is_file():
        raise CommandError(f"{checkpoint}: {'a folder, not a file' if checkpoint.is_dir() else 'no such file'}")
    png = Path(args.output or checkpoint.parent) / "confusion.png"
    writable(png)
    report = evaluate(checkpoint, args.data, batch_size=args.batch_size, workers=args.workers,
                      confusion_png=png, progress=not args.json)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['data']}: {report['images']} images, top-1 {report['top1']:.4f}, top-5 {report['top5']:.4f}, "
          f"loss {report['loss']:.4f}")
    width = max(len(name) for name in report["per_class"])
    print(f"{'class'.ljust(width)}  precision  recall  support")
    for name, row in report["per_class"].items():
        print(f"{name.ljust(width)}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['support']:7d}")
    if png.is_file():
        print(f"confusion matrix: {png}")
    return 0
