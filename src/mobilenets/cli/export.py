"""`mobilenets export`: a zoo model or a trained checkpoint as ONNX, TorchScript or torch.export (pt2)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..classification.checkpoint import load_classifier
from ..deploy import FORMATS, export
from ..weights.convert import WeightsError
from . import CommandError, add_model_arguments, model_from_args, resolution


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `export`."""
    p = subparsers.add_parser("export", help="export a model for inference (ONNX, TorchScript, pt2)",
                              description="Export NAME (random weights, for benchmarking) or --checkpoint C (a "
                                          "trained classifier, its class names and preprocessing kept in the "
                                          "metadata), with batch norm folded into the convolutions.")
    add_model_arguments(p, name_required=False)
    p.add_argument("--checkpoint", metavar="C", help="best.safetensors or last.pt of a training run")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--resolution", type=resolution, metavar="R",
                   help="input size (default: the checkpoint's, else 224)")
    p.add_argument("--dynamic-batch", action="store_true", help="any batch size at run time (else batch 1)")
    p.add_argument("--output", required=True, metavar="PATH")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Build or load the model, export it, and print where it went."""
    if (args.name is None) == (args.checkpoint is None):
        raise CommandError("give either a model NAME or --checkpoint, not both")
    metadata = {}
    if args.checkpoint is not None:
        try:
            classifier = load_classifier(args.checkpoint)
        except (WeightsError, ValueError, FileNotFoundError) as e:
            raise CommandError(str(e)) from None
        model, size = classifier.model, classifier.preprocess.image_size
        metadata = {"classes": classifier.classes, "preprocess": classifier.preprocess.to_dict()}
    else:
        model, size = model_from_args(args), 224
    metadata["model"] = model.config
    path = export(model, args.format, Path(args.output), resolution=args.resolution or size,
                  dynamic_batch=args.dynamic_batch, metadata=metadata)
    print(f"wrote {path} ({args.format}, {args.resolution or size}x{args.resolution or size}, "
          f"{'dynamic' if args.dynamic_batch else 'batch 1'})")
    return 0
