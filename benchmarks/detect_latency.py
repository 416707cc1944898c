"""End-to-end CPU latency of CenterNet detectors at 512x512, beside torchvision's SSDlite320 and the seed's 600 ms.

    python benchmarks/detect_latency.py [--runs 30] [--threads 2] [--size 512] [--no-executorch]

Per image (a 640x480 photo-sized input, batch 1): letterbox + normalise, the network, decoding (3x3 max-pool peaks,
top-100 over the score threshold `predict` and `serve` apply, boxes mapped back to the 640x480 image). CenterNet on
onnxruntime (our export: batch norm folded; its threads told not to spin between runs, since PyTorch pre/post-
processing shares the cores), as ExecuTorch programs on XNNPACK (fp32, and int8 calibrated on 64 built-in images as
`mobilenets detect export --format executorch --int8` does; lowering them takes minutes) and in eager PyTorch;
torchvision's SSDlite320-MobileNetV3-Large in eager PyTorch with its own resize and post-processing (random weights:
no downloads here; its NMS then sees more candidate boxes than a trained model's, so its post-processing time is an
upper bound). Also: parameters, MAdds, and training images/s of the default `mobilenets detect train` recipe.
Prints markdown tables.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torchvision
from PIL import Image

from mobilenets import cpu
from mobilenets.deploy import export_graph, export_pte, load_exported
from mobilenets.deploy.runtime import onnx_session
from mobilenets.deploy.timing import time_call
from mobilenets.profile import profile
from mobilenets.tasks.detection import create_detector, decode
from mobilenets.tasks.detection.config import DetectConfig
from mobilenets.tasks.detection.decode import SCORE_THRESHOLD
from mobilenets.tasks.detection.export import detector_calibration
from mobilenets.tasks.detection.loss import CenterNetCriterion
from mobilenets.tasks.detection.synthetic import SyntheticDetection
from mobilenets.tasks.detection.transforms import boxes_to_original, collate, eval_transform, train_transform

SEED_MS = 600  # the seed document's CenterNet-MobileNetV2 on a CPU
BACKBONES = ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")


def _pipeline(run_network, transform, image: Image.Image):
    """preprocess → network → decode → boxes in original pixels, as one call."""
    def detect():
        x, target = transform(image, {"boxes": torch.zeros(0, 4)})
        outputs = run_network(x[None])
        found = decode(*outputs, k=100, threshold=SCORE_THRESHOLD)[0]
        return boxes_to_original(found.boxes, target["letterbox"]), found.scores, found.labels
    return detect


def end_to_end_ms(model: torch.nn.Module, size: int, threads: int, work: Path, runs: int = 30,
                  network_only: bool = False) -> float:
    """Median ms of letterbox + onnxruntime network + decode for one 640x480 image (or the network alone)."""
    path = export_graph(model, "onnx", work / "detector.onnx", resolution=size,
                        output_names=["heatmap", "size", "offset"])
    session = onnx_session(path, threads, spinning=network_only)  # idle threads must not spin through decoding
    if network_only:
        zeros = torch.zeros(1, 3, size, size).numpy()
        return time_call(lambda: session.run(None, {"image": zeros}), runs=runs)[0]

    def network(x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.from_numpy(o) for o in session.run(None, {"image": x.numpy()})]

    image = Image.new("RGB", (640, 480), (90, 120, 150))
    with torch.no_grad():
        return time_call(_pipeline(network, eval_transform(size), image), runs=runs)[0]


def program_end_to_end_ms(model: torch.nn.Module, size: int, threads: int, work: Path, runs: int,
                          int8: bool) -> tuple[float, float]:
    """Median ms of letterbox + ExecuTorch network + decode for one 640x480 image, and of the network alone."""
    calibration = detector_calibration(size) if int8 else None
    program = load_exported(export_pte(model, work / "detector.pte", resolution=size, calibration=calibration),
                            threads=threads)
    zeros = torch.zeros(1, 3, size, size).numpy()
    network_ms = time_call(lambda: program.run(zeros), runs=runs)[0]

    def network(x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.from_numpy(o) for o in program.run(x.numpy())]

    image = Image.new("RGB", (640, 480), (90, 120, 150))
    with torch.no_grad():
        return time_call(_pipeline(network, eval_transform(size), image), runs=runs)[0], network_ms


def centernet_rows(size: int, runs: int, threads: int, work: Path, executorch: bool) -> list[str]:
    image = Image.new("RGB", (640, 480), (90, 120, 150))
    rows = []
    for backbone in BACKBONES:
        model = create_detector(backbone=backbone, width_mult=1.0, num_classes=80).eval()
        cost = profile(model, size)
        onnx_ms = end_to_end_ms(model, size, threads, work, runs)
        network_ms = end_to_end_ms(model, size, threads, work, runs, network_only=True)
        programs = [program_end_to_end_ms(model, size, threads, work, runs, int8) for int8 in (False, True)] \
            if executorch else []
        with torch.no_grad():
            eager_ms = time_call(_pipeline(model, eval_transform(size), image), runs=max(5, runs // 3))[0]
        program_cells = "".join(f" {ms:.1f} (network {net:.1f}) |" for ms, net in programs)
        rows.append(f"| CenterNet {backbone} 1.0 | {size} | {cost.params / 1e6:.2f}M | {cost.madds / 1e9:.2f}G | "
                    f"{onnx_ms:.1f} (network {network_ms:.1f}) |{program_cells} {eager_ms:.1f} | "
                    f"{SEED_MS / min([onnx_ms, *(ms for ms, _ in programs)]):.1f}x |")
    return rows


def ssdlite_row(runs: int, empty_cells: int) -> str:
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    image = torch.rand(3, 480, 640)
    with torch.no_grad():
        ms = time_call(lambda: model([image]), runs=max(5, runs // 3))[0]
    params = sum(p.numel() for p in model.parameters())
    return f"| torchvision SSDlite320-MobileNetV3-Large (eager, its post-processing) | 320 | {params / 1e6:.2f}M | " \
           f"– | – |{' – |' * empty_cells} {ms:.1f} | {SEED_MS / ms:.1f}x |"


def training_images_per_second(steps: int = 6) -> str:
    """Images/s of the default detection recipe's training step (data drawing and augmentation included)."""
    config = DetectConfig()
    model = create_detector(backbone=config.backbone, width_mult=config.width, num_classes=6).train()
    model = model.to(memory_format=torch.channels_last)
    data = SyntheticDetection("train", size=config.image_size, length=config.batch_size * (steps + 1))
    augment = train_transform(config.image_size)
    criterion = CenterNetCriterion(6)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(batch: int) -> None:
        items = [augment(*data[batch * config.batch_size + i]) for i in range(config.batch_size)]
        x, targets = collate(items)
        loss = criterion(model(x.contiguous(memory_format=torch.channels_last)), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step(steps)  # warm-up
    seconds = [time_call(lambda b=b: step(b), warmup=0, runs=1)[0] / 1e3 for b in range(steps)]
    return (f"training ({config.backbone} {config.width}, {config.image_size} px, batch {config.batch_size}, "
            f"AdamW, channels_last): {config.batch_size * steps / sum(seconds):.1f} images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--no-executorch", dest="executorch", action="store_false",
                        help="skip the ExecuTorch programs (their int8 lowering takes minutes)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu.summary()}")
    print(f"{args.threads} threads, torch {torch.__version__}; end-to-end ms per 640x480 image, median of "
          f"{args.runs}\n")
    programs = " ExecuTorch fp32 ms (network alone) | ExecuTorch int8 ms (network alone) |" if args.executorch else ""
    print(f"| detector | input | params | MAdds | onnxruntime ms (network alone) |{programs} eager ms | "
          f"vs seed 600 ms (fastest) |")
    print("|---|---|---|---|---|" + "---|" * (2 * args.executorch) + "---|---|")
    with tempfile.TemporaryDirectory() as work:
        for row in centernet_rows(args.size, args.runs, args.threads, Path(work), args.executorch):
            print(row, flush=True)
    print(ssdlite_row(args.runs, 2 * args.executorch))
    print("\n" + training_images_per_second())


if __name__ == "__main__":
    main()
