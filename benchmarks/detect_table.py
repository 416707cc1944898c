"""The table users of lightweight CenterNets ask for: backbone x input size -> AP50 / AP on the built-in set,
parameters, MAdds and CPU latency, each detector trained with the default recipe in this run.

    python benchmarks/detect_table.py [--backbones mobilenet_v2:0.5,mobilenet_v3_small:1.0] [--sizes 160]

The AP is from the default `mobilenets detect train` recipe on the built-in synthetic set (a smoke test, not
a COCO number). Latency: end to end (letterbox, onnxruntime network, decode) per 640x480 image, 2 threads,
at the training size and at 512.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from detect_latency import end_to_end_ms

from mobilenets import cpu
from mobilenets.profile import profile
from mobilenets.tasks.detection import train_detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="mobilenet_v2:0.5,mobilenet_v3_small:1.0,mobilenet_v3_large:0.75")
    parser.add_argument("--sizes", default="160")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu.summary()}\n")
    print("| backbone | width | input | AP50 | AP | params | MAdds | train s | ms at input | ms at 512 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        trained = []
        for spec in args.backbones.split(","):
            backbone, width = spec.split(":")
            for size in map(int, args.sizes.split(",")):
                run = train_detector(output=f"{work}/{backbone}-{width}-{size}", backbone=backbone,
                                     width=float(width), image_size=size, progress=False)
                trained.append((backbone, width, size, run))
        for backbone, width, size, run in trained:  # timed after all training, so no run slows another's timing
            model = run.model.eval()
            cost = profile(model, size)
            latency = [end_to_end_ms(model, s, args.threads, Path(work)) for s in (size, 512)]
            print(f"| {backbone} | {width} | {size} | {run.summary['map50']:.3f} | {run.summary['map']:.3f} | "
                  f"{cost.params / 1e6:.2f}M | {cost.madds / 1e6:.0f}M | {run.summary['seconds']:.0f} | "
                  f"{latency[0]:.1f} | {latency[1]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
