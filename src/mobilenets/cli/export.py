"""`mobilenets export`: a zoo model or a trained checkpoint as ONNX, TorchScript or torch.export (pt2)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .. import cpu
from ..classification.checkpoint import load_classifier
from ..classification.data import build_data
from ..classification.evaluate import evaluation_set, training_config
from ..data.folder import DataError
from ..data.transforms import default_preprocess, eval_transform
from ..deploy import FLOAT_GROUPS, FORMATS, calibration_batches, export, finetune_for_int8, quantize
from ..deploy.quantize import checked_groups, choose_weight_range, compare
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
    p.add_argument("--int8", action="store_true", help="onnx only: int8 static quantization (onnxruntime)")
    p.add_argument("--calibration", metavar="DIR", help="--int8: images to calibrate on (default: built-in shapes)")
    p.add_argument("--val", metavar="DIR", help="--int8: labelled images (class folders) for the int8-vs-fp32 "
                                                  "report (default: the checkpoint's validation split)")
    p.add_argument("--keep-float", type=float_groups, default=(), metavar="GROUPS",
                   help=f"--int8: layer groups left in float, comma-separated, of {','.join(FLOAT_GROUPS)} "
                        "(default: none)")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--full-range", dest="reduce_range", action="store_const", const=False,
                         help="--int8: 8-bit weights (the default on CPUs with VNNI, or ARM's dot product)")
    weights.add_argument("--reduce-range", dest="reduce_range", action="store_const", const=True,
                         help="--int8: 7-bit weights (the default on CPUs without: their onnxruntime int8 kernels "
                              "saturate with 8-bit weights)")
    p.add_argument("--qat-epochs", type=int, default=0, metavar="N",
                   help="--int8 --checkpoint: first fine-tune N epochs on the run's training data with int8 "
                        "simulated (quantization-aware), so that int8 keeps the fp32 predictions (default: 0)")
    p.add_argument("--output", required=True, metavar="PATH")
    p.set_defaults(run=run)


def float_groups(text: str) -> tuple[str, ...]:
    """argparse type for --keep-float: a comma-separated subset of FLOAT_GROUPS."""
    try:
        return checked_groups(g for g in text.split(",") if g)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    """Build or load the model, export it, and print where it went."""
    if (args.name is None) == (args.checkpoint is None):
        raise CommandError("give either a model NAME or --checkpoint, not both")
    if args.int8 and args.format != "onnx":
        raise CommandError("--int8 needs --format onnx")
    if args.qat_epochs < 0:
        raise CommandError(f"--qat-epochs must be 0 or more, got {args.qat_epochs}")
    if args.qat_epochs and not (args.int8 and args.checkpoint):
        raise CommandError("--qat-epochs needs --int8 and a trained --checkpoint")
    if args.reduce_range is not None and not args.int8:
        raise CommandError("--full-range and --reduce-range need --int8")
    if args.int8:  # quantize and the QAT grid make the same choice: choose_weight_range is their one source
        print(f"int8 weights: {choose_weight_range(args.reduce_range)}")
    metadata = {}
    preprocess = classifier = None
    if args.checkpoint is not None:
        try:
            classifier = load_classifier(args.checkpoint)
        except (WeightsError, ValueError, FileNotFoundError) as e:
            raise CommandError(str(e)) from None
        model, size, preprocess = classifier.model, classifier.preprocess.image_size, classifier.preprocess
        metadata = {"classes": classifier.classes, "preprocess": classifier.preprocess.to_dict()}
        if args.qat_epochs:
            model = _int8_finetuned(classifier, args.qat_epochs, reduce_range=args.reduce_range)
    else:
        model, size = model_from_args(args), 224
    metadata["model"] = model.config
    size = args.resolution or size
    output = Path(args.output)
    with tempfile.TemporaryDirectory() as work:
        fp32 = Path(work) / "fp32.onnx" if args.int8 else output
        path = export(model, args.format, fp32, resolution=size, dynamic_batch=args.dynamic_batch,
                      metadata=metadata)
        if args.int8:
            if preprocess is None or preprocess.image_size != size:
                preprocess = default_preprocess(size)
            try:
                path = quantize(fp32, output, calibration_batches(args.calibration, preprocess),
                                keep_float=args.keep_float, reduce_range=args.reduce_range)
                _report_int8(fp32, path, preprocess, classifier, args.val)
            except (ValueError, DataError) as e:
                raise CommandError(str(e)) from None
    print(f"wrote {path} ({args.format}{', int8' if args.int8 else ''}, {size}x{size}, "
          f"{'dynamic batch' if args.dynamic_batch else 'batch 1'})")
    return 0


def _int8_finetuned(classifier, epochs: int, reduce_range: bool | None) -> torch.nn.Module:
    """The checkpoint's model after `epochs` of quantization-aware fine-tuning on its run's training data."""
    config = training_config(classifier)
    try:
        data = build_data(config)
    except (DataError, ValueError) as e:
        raise CommandError(f"--qat-epochs: cannot read the run's training data: {e}") from None
    loader = DataLoader(data.train, batch_size=config.batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(config.seed))
    return finetune_for_int8(classifier.model, loader, epochs=epochs, reduce_range=reduce_range)


def _report_images(preprocess, classifier, val: str | None, limit: int = 2000
                   ) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Images (and labels, for a trained checkpoint) to compare int8 with fp32 on: the checkpoint's validation
    split or `val`; for a zoo model with random weights, unlabelled built-in shapes."""
    if classifier is None:
        images = np.concatenate(list(calibration_batches(None, preprocess, images=64, split="val")))
        return images, None, "64 built-in validation images (no labels for random weights)"
    dataset, where = evaluation_set(classifier, val)
    transform = eval_transform(preprocess)
    picks = range(min(limit, len(dataset)))
    items = [dataset[i] for i in picks]
    images = np.stack([transform(image).numpy() for image, _ in items])
    return images, np.array([label for _, label in items]), f"{len(items)} images of {where}"


def _report_int8(fp32: Path, int8: Path, preprocess, classifier, val: str | None) -> None:
    """Top-1 agreement, accuracy (with labels) and latency of int8 against fp32; says so when int8 is slower."""
    images, labels, where = _report_images(preprocess, classifier, val)
    report = compare(fp32, int8, images, labels)
    accuracy = (f", top-1 fp32 {report['fp32_top1']:.4f} int8 {report['int8_top1']:.4f}" if labels is not None
                else "")
    print(f"int8 vs fp32 on {where}: top-1 agreement {report['agreement']:.4f}{accuracy}; batch-1 latency "
          f"{report['int8_ms']:.2f} ms vs {report['fp32_ms']:.2f} ms")
    if report["int8_ms"] >= report["fp32_ms"]:
        info = cpu.describe()
        why = (f"even with this CPU's {info.int8_dot_product_name}" if info.int8_dot_product
               else f"without {info.int8_dot_product_name} there are no fast int8 kernels")
        print(f"warning: on this CPU the int8 model is not faster than fp32 ({report['int8_ms']:.2f} ms vs "
              f"{report['fp32_ms']:.2f} ms; {why}): prefer the fp32 export", file=sys.stderr)
