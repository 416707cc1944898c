"""The default detection run, and what a pretrained backbone buys: AP50 against training images seen, from random
initialisation (exactly `mobilenets detect train`, timed as a user runs it) and from a backbone trained on the
built-in classification set (the same recipe plus --pretrained). Writes one plot.

    python benchmarks/detect_learning.py [--classifier runs/train/best.safetensors] [--output docs/detect_learning.png]
    python benchmarks/detect_learning.py --from-runs runs/detect runs/detect-pretrained   # plot finished runs

Without --classifier, the default `mobilenets train` run (MobileNetV2 0.5 on the built-in shapes, ~5 minutes)
makes one first.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mobilenets import cpu
from mobilenets.plots import pyplot, save_figure
from mobilenets.tasks.classification import train
from mobilenets.tasks.detection.config import DetectConfig

LABELS = ("random initialisation (the default run)", "backbone pretrained on built-in shapes")


def _read_curve(run: Path) -> list[dict[str, float]]:
    """A run's metrics.csv rows, with the training images seen by the end of each epoch."""
    per_epoch = json.loads((run / "summary.json").read_text())["train_images"]
    with open(run / "metrics.csv") as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return [{**row, "images_seen": row["epoch"] * per_epoch} for row in rows]


def _train_pair(classifier: str | None, work: str) -> list[Path]:
    """The default detection run and the same run with --pretrained; returns their output folders."""
    if classifier is None:
        result = train(output=f"{work}/classify", model=DetectConfig.backbone, width=DetectConfig.width,
                       progress=False)
        classifier = str(result.output / "best.safetensors")
        print(f"classifier: best top-1 {result.summary['best_top1']:.4f} on the built-in shapes")
    outputs = []
    for extra in ([], ["--pretrained", classifier]):
        out = Path(work) / f"detect{len(outputs)}"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mobilenets", "detect", "train", "--output", str(out), *extra],
                       check=True, stderr=subprocess.DEVNULL)
        print(f"{out}: {time.perf_counter() - start:.0f} s wall clock")
        outputs.append(out)
    return outputs


def _plot(curves: dict[str, list[dict[str, float]]], output: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    defaults = DetectConfig()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, rows in curves.items():
        ax.plot([r["images_seen"] for r in rows], [r["map50"] for r in rows], marker="o", label=label)
    ax.set(xlabel="training images seen", ylabel="validation AP50", ylim=(0, 1),
           title=f"CenterNet {defaults.backbone} {defaults.width}, {defaults.image_size} px, built-in set")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, output)
    print(f"wrote {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier", help="a classification checkpoint of the same backbone and width")
    parser.add_argument("--from-runs", nargs=2, metavar=("RANDOM", "PRETRAINED"),
                        help="plot two finished runs (output folders) instead of training them")
    parser.add_argument("--output", default="docs/detect_learning.png")
    args = parser.parse_args()
    print(f"CPU: {cpu.summary()}")
    with tempfile.TemporaryDirectory() as work:
        runs = [Path(r) for r in args.from_runs] if args.from_runs else _train_pair(args.classifier, work)
        curves = {label: _read_curve(run) for label, run in zip(LABELS, runs, strict=True)}
    for label, rows in curves.items():
        print(f"{label}: " + ", ".join(f"{r['images_seen']:.0f} images AP50 {r['map50']:.3f} AP {r['map']:.3f}"
                                       for r in rows) + f"; {sum(r['seconds'] for r in rows):.0f} s of training")
    _plot(curves, Path(args.output))


if __name__ == "__main__":
    main()
