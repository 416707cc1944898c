"""`mobilenets export`: a zoo model or a trained checkpoint as ONNX, TorchScript or torch.export (pt2)."""

from __future__ import annotations

import argparse
import sys

from .. import cpu
from ..deploy import FLOAT_GROUPS, Int8Report, check_request, choose_weight_range, export, list_formats
from ..deploy.quantize import checked_groups
from ..recipes import path_problems, path_text, resolution
from ..tasks.classification.export import export_classifier
from . import CommandError, add_model_arguments, model_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `export`."""
    p = subparsers.add_parser("export", help="export a model for inference (ONNX, TorchScript, pt2, ExecuTorch)",
                              description="Export NAME (random weights, for benchmarking) or --checkpoint C (a "
                                          "trained classifier, its class names and preprocessing kept in the "
                                          "metadata), with batch norm folded into the convolutions. "
                                          "--format executorch writes a .pte for phones (batch 1, every "
                                          "operator on XNNPACK), its metadata in <output>.json.")
    add_model_arguments(p, name_required=False)
    p.add_argument("--checkpoint", metavar="C", help="best.safetensors or last.pt of a training run")
    p.add_argument("--format", required=True, choices=[f.name for f in list_formats("classification")])
    p.add_argument("--resolution", type=resolution, metavar="R",
                   help="input size (default: the checkpoint's, else 224)")
    p.add_argument("--dynamic-batch", action="store_true", help="onnx, torchscript, pt2: any batch size at run "
                                                                  "time (else batch 1)")
    p.add_argument("--int8", action="store_true", help="onnx or executorch: int8 static quantization "
                                                       "(onnxruntime's, or PT2E for XNNPACK)")
    p.add_argument("--calibration", metavar="DIR", help="--int8: images to calibrate on (default: built-in shapes)")
    p.add_argument("--val", metavar="DIR", help="--int8: labelled images (class folders) for the int8-vs-fp32 "
                                                  "report (default: the checkpoint's validation split)")
    p.add_argument("--keep-float", type=float_groups, metavar="GROUPS",
                   help=f"--int8: layer groups left in float, comma-separated, of {','.join(FLOAT_GROUPS)}, or "
                        "'none' (default: none for onnx; for executorch, those XNNPACK runs faster in float on "
                        "this CPU: on x86 first_conv,se,large_depthwise)")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--full-range", dest="reduce_range", action="store_const", const=False,
                         help="--int8: 8-bit weights (the default on CPUs with VNNI, or ARM's dot product)")
    weights.add_argument("--reduce-range", dest="reduce_range", action="store_const", const=True,
                         help="--int8: 7-bit weights (the default on CPUs without: their onnxruntime int8 kernels "
                              "saturate with 8-bit weights)")
    p.add_argument("--qat-epochs", type=int, default=0, metavar="N",
                   help="--int8 --checkpoint: first fine-tune N epochs on the run's training data with int8 "
                        "simulated (quantization-aware), so that int8 keeps the fp32 predictions (default: 0)")
    p.add_argument("--output", type=path_text, required=True, metavar="PATH")
    p.set_defaults(run=run)


def float_groups(text: str) -> tuple[str, ...]:
    """argparse type for --keep-float: a comma-separated subset of FLOAT_GROUPS, or 'none'."""
    if text.strip() == "none":
        return ()
    try:
        return checked_groups(g for g in text.split(",") if g)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    """Export NAME (random weights) or a trained --checkpoint, and print where it went and the int8 report."""
    if (args.name is None) == (args.checkpoint is None):
        raise CommandError("give either a model NAME or --checkpoint, not both")
    int8 = {"int8": args.int8, "calibration": args.calibration, "keep_float": args.keep_float,
            "reduce_range": args.reduce_range}
    check_request(args.format, "classification", dynamic_batch=args.dynamic_batch,
                  qat_epochs=args.qat_epochs, val=args.val, **int8)
    if args.val is not None and args.checkpoint is None:
        raise CommandError("--val needs a trained --checkpoint (a zoo model's random weights have no labels)")
    if problems := path_problems(folders={"--calibration": args.calibration, "--val": args.val}):
        raise CommandError(problems[0])
    if args.int8 and args.format == "onnx":  # quantize and the QAT grid: choose_weight_range is their one source
        print(f"int8 weights: {choose_weight_range(args.reduce_range)}")
    if args.checkpoint is not None:
        exported = export_classifier(args.checkpoint, args.format, args.output, resolution=args.resolution,
                                     dynamic_batch=args.dynamic_batch, val=args.val, qat_epochs=args.qat_epochs,
                                     **int8)
    else:
        model = model_from_args(args)
        exported = export(model, args.format, args.output, resolution=args.resolution or 224,
                          dynamic_batch=args.dynamic_batch, metadata={"model": model.config},
                          qat_epochs=args.qat_epochs, **int8)
    if exported.int8 is not None:
        _print_int8(exported.int8)
    size = exported.resolution
    print(f"wrote {exported.path} ({args.format}{', int8' if args.int8 else ''}, {size}x{size}, "
          f"{'dynamic batch' if args.dynamic_batch else 'batch 1'})")
    return 0


def _print_int8(report: Int8Report) -> None:
    """Top-1 agreement, accuracy (with labels) and latency of int8 against fp32; a warning when int8 is slower."""
    accuracy = (f", top-1 fp32 {report.fp32_top1:.4f} int8 {report.int8_top1:.4f}" if report.fp32_top1 is not None
                else "")
    print(f"layers kept in float: {report.float_groups}")
    print(f"int8 vs fp32 on {report.images}: top-1 agreement {report.agreement:.4f}{accuracy}; batch-1 latency "
          f"{report.int8_ms:.2f} ms vs {report.fp32_ms:.2f} ms")
    if report.int8_ms >= report.fp32_ms:
        info = cpu.describe()
        why = (f"even with this CPU's {info.int8_dot_product_name}" if info.int8_dot_product
               else f"without {info.int8_dot_product_name} there are no fast int8 kernels")
        print(f"warning: on this CPU the int8 model is not faster than fp32 ({report.int8_ms:.2f} ms vs "
              f"{report.fp32_ms:.2f} ms; {why}): prefer the fp32 export", file=sys.stderr)
