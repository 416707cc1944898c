"""`mobilenets detect train|eval|predict|export`: CenterNet detection with the classification commands' conventions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..._atomic import writable, write_text
from ...cli import CommandError, add_model_source, add_training_command, model_source
from ...cli.export import float_groups
from ...deploy.formats import check_request, list_formats
from ...recipes import number_in, path_text, positive_int
from .checkpoint import TASK, load_detector
from .config import DetectConfig, make_detect_config
from .decode import SCORE_THRESHOLD
from .export import export_detector
from .inference import evaluate_checkpoint, predict_images
from .task import train_detector


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `detect` and its four commands."""
    p = subparsers.add_parser("detect", help="CenterNet object detection: train, eval, predict, export",
                              description="CenterNet (objects as points) on any zoo backbone.")
    commands = p.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_train(commands)
    _add_eval(commands)
    _add_predict(commands)
    _add_export(commands)


def _add_val_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="DIR", help="COCO layout or export layout, as for training")
    p.add_argument("--val-json", metavar="FILE")
    p.add_argument("--val-images", metavar="DIR")


def _add_train(commands: argparse._SubParsersAction) -> None:
    add_training_command(commands, "train", DetectConfig, make_detect_config, train_detector,
                         help="train a detector (default: on the built-in synthetic set)",
                         description="Train a CenterNet. With no options: the built-in synthetic detection set and "
                                     "a fast recipe (under 10 minutes on 2 CPU cores; a smoke test).")


def _add_eval(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("eval", help="COCO AP of a trained detector",
                            description="AP, AP50, AP75, AP small/medium/large with pycocotools. Without data "
                                        "options: the run's own validation split.")
    add_model_source(p, "detector")
    _add_val_arguments(p)
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N")
    p.add_argument("--json", action="store_true", help="one JSON object with map, map50, map75, ...")
    p.add_argument("--save-results", type=path_text, metavar="FILE", help="write the detections in COCO result format")
    p.set_defaults(run=_eval)


def _eval(args: argparse.Namespace) -> int:
    if args.save_results:
        writable(args.save_results, keeping=[model_source(args)])
    if (args.val_json is None) != (args.val_images is None):
        raise CommandError("--val-json and --val-images go together")
    if args.data is not None and args.val_json is not None:
        raise CommandError("give either --data or --val-json/--val-images, not both")
    source = model_source(args)
    result, where = evaluate_checkpoint(source, data=args.data, val_json=args.val_json,
                                        val_images=args.val_images, batch_size=args.batch_size,
                                        progress=not args.json)
    if args.save_results:
        write_text(args.save_results, json.dumps(result.results))
    if args.json:
        print(json.dumps(result.metrics))
        return 0
    print(f"{source} on {where}:")
    for name, value in result.metrics.items():
        print(f"  {name:<11s} {value:.4f}")
    return 0


def _add_predict(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("predict", help="detect objects in images; draw them and write COCO-format JSON",
                            description="Writes OUTPUT/<image>.png with boxes, class names and scores drawn "
                                        "(<image>_2.png, _3, ... where a name is an input's or another drawing's: "
                                        "inputs are never overwritten), and "
                                        "OUTPUT/detections.json in COCO result format. An unreadable image gets a "
                                        "one-line error and exit status 1; the others are still predicted.")
    add_model_source(p, "detector")
    p.add_argument("images", type=path_text, nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--threshold", type=number_in(0, 1, low_open=False), default=SCORE_THRESHOLD, metavar="S",
                   help=f"lowest score kept, in [0, 1] ({SCORE_THRESHOLD})")
    p.add_argument("--output", type=path_text, default="runs/detect-predict", metavar="DIR")
    p.set_defaults(run=_predict)


def _predict(args: argparse.Namespace) -> int:
    writable(Path(args.output) / "detections.json")
    results, coco = predict_images(model_source(args), args.images, threshold=args.threshold, draw_to=args.output)
    if any(result.error is None for result in results):
        write_text(Path(args.output) / "detections.json", json.dumps(coco))
    failed = 0
    for result in results:
        if result.error is not None:
            failed += 1
            print(f"mobilenets: error: {result.error}", file=sys.stderr)
        else:
            found = ", ".join(f"{c} {s:.2f}" for c, s in zip(result.classes, result.scores, strict=True))
            print(f"{result.path}: {len(result.scores)} objects{': ' + found if found else ''}")
    if failed < len(results):
        print(f"drawn images and detections.json in {args.output}")
    return 1 if failed else 0


def _add_export(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("export", help="export a trained detector to ONNX or ExecuTorch (decoding: "
                                           "mobilenets.detection.decode)",
                            description="ONNX, or an ExecuTorch program for phones (--format executorch: batch 1, "
                                        "every operator on XNNPACK, metadata in <output>.json), with batch norm "
                                        "folded; outputs heatmap (logits), size and offset at stride 4. Decode them "
                                        "with mobilenets.detection.decode and map the boxes back with "
                                        "boxes_to_original (the letterbox in the metadata).")
    p.add_argument("--checkpoint", required=True, metavar="C")
    p.add_argument("--format", choices=[f.name for f in list_formats(TASK)], default="onnx",
                   help="the export format (onnx)")
    p.add_argument("--int8", action="store_true", help="executorch: int8 (PT2E with XNNPACK's quantizer)")
    p.add_argument("--calibration", metavar="DIR", help="--int8: images to calibrate on (default: the built-in set)")
    p.add_argument("--keep-float", type=float_groups, metavar="GROUPS",
                   help="--int8: layer groups left in float, as for mobilenets export (default: those XNNPACK runs "
                        "faster in float on this CPU; 'none' for everything int8)")
    p.add_argument("--output", type=path_text, required=True, metavar="PATH")
    p.add_argument("--dynamic-batch", action="store_true", help="onnx: any batch size at run time")
    p.set_defaults(run=_export)


def _export(args: argparse.Namespace) -> int:
    check_request(args.format, TASK, int8=args.int8, dynamic_batch=args.dynamic_batch,
                  calibration=args.calibration, keep_float=args.keep_float)  # before the checkpoint loads
    writable(args.output)
    detector = load_detector(args.checkpoint)
    path = export_detector(detector, args.output, format=args.format, dynamic_batch=args.dynamic_batch,
                           int8=args.int8, calibration=args.calibration, keep_float=args.keep_float)
    print(f"wrote {path} ({args.format}{', int8' if args.int8 else ''}, {detector.image_size}x"
          f"{detector.image_size}, outputs heatmap, size, offset)")
    return 0
