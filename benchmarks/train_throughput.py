"""Training throughput of our MobileNetV2 against torchvision's in the same loop, and the default run's time-to-90%.

    python benchmarks/train_throughput.py                 # both parts (the default run takes ~5 minutes)
    python benchmarks/train_throughput.py --skip-default-run

Part 1 times SGD steps of both models on the same random batch, interleaved (A, B, A, B, ...) so machine noise
hits both alike, and prints images/s and the ratio ours / torchvision (target >= 1.0).
Part 2 runs `mobilenets train` with its defaults (built-in data) and reports the wall-clock time until validation
top-1 first reaches 90%, and the total.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torchvision

import mobilenets
from mobilenets import cpu
from mobilenets.tasks.classification import train


def steps_per_second(model: torch.nn.Module, batch: torch.Tensor, labels: torch.Tensor, steps: int) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    start = time.perf_counter()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(batch), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps / (time.perf_counter() - start)


def throughput(batch_size: int, resolution: int, steps: int, rounds: int, channels_last: bool) -> None:
    torch.manual_seed(0)
    models = {"ours": mobilenets.create_model("mobilenet_v2", num_classes=10),
              "torchvision": torchvision.models.mobilenet_v2(num_classes=10)}
    batch = torch.randn(batch_size, 3, resolution, resolution)
    labels = torch.randint(0, 10, (batch_size,))
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
        models = {k: m.to(memory_format=torch.channels_last) for k, m in models.items()}
    for model in models.values():  # warm-up: kernel selection, allocator
        model.train()
        steps_per_second(model, batch, labels, 2)
    rates: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for name, model in models.items():
            rates[name].append(steps_per_second(model, batch, labels, steps) * batch_size)
    ours, theirs = statistics.median(rates["ours"]), statistics.median(rates["torchvision"])
    layout = "channels_last" if channels_last else "NCHW"
    print(f"mobilenet_v2 1.0, batch {batch_size}, {resolution}px, {layout}, {torch.get_num_threads()} threads, "
          f"median of {rounds} interleaved rounds of {steps} steps")
    print(f"  ours        {ours:8.1f} images/s")
    print(f"  torchvision {theirs:8.1f} images/s")
    print(f"  ratio ours / torchvision: {ours / theirs:.3f}")


def time_to_90() -> None:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = train(output=out, progress=False)
        total = time.perf_counter() - start
        with open(Path(out) / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
    elapsed, reached = 0.0, None
    for row in rows:
        elapsed += float(row["seconds"])
        if reached is None and float(row["top1"]) >= 0.9:
            reached = (int(row["epoch"]), elapsed)
    print(f"default run ({result.summary['model']} α={result.summary['width']}, {result.summary['epochs']} epochs): "
          f"best top-1 {result.summary['best_top1']:.4f}, wall clock {total:.0f} s (training epochs "
          f"{elapsed:.0f} s)")
    if reached:
        print(f"  top-1 >= 0.90 first at epoch {reached[0]}, after {reached[1]:.0f} s of training")
    else:
        print("  top-1 never reached 0.90")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-default-run", action="store_true")
    args = parser.parse_args()
    print(f"CPU: {cpu.summary()}")
    for channels_last in (False, True):
        throughput(args.batch, args.resolution, args.steps, args.rounds, channels_last)
    if not args.skip_default_run:
        time_to_90()


if __name__ == "__main__":
    main()
