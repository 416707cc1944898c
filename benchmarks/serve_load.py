"""Requests/s and latency of `mobilenets serve` under concurrent clients, micro-batching against batch-1 serving.

    python benchmarks/serve_load.py [--seconds 10] [--clients 1,8,32]

Loopback only; each server runs in its own process (`mobilenets serve --model ...`, uvicorn), the clients are
threads of this process sending the same 224x224 JPEG (MobileNetV3-Small, random weights, exported to ONNX with a
dynamic batch) or 512x384 image (the default CenterNet detector, random weights, 160 px). For each model and
concurrency: the same server with `--max-batch-size 16` and `--max-batch-size 1`, each for `--seconds`. Prints a
markdown table with the CPU and its instruction sets.
"""

from __future__ import annotations

import argparse
import http.client
import io
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

from mobilenets import cpu, create_model
from mobilenets.deploy import export
from mobilenets.tasks.detection import create_detector
from mobilenets.tasks.detection.config import DetectConfig


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _exported_models(work: Path) -> dict[str, Path]:
    """MobileNetV3-Small (224) and the default detector as dynamic-batch ONNX files with the metadata serving needs."""
    from mobilenets.data.transforms import default_preprocess

    classes = [f"class{i}" for i in range(1000)]
    classifier = create_model("mobilenet_v3_small").eval()
    paths = {"mobilenet_v3_small 224": export(
        classifier, "onnx", work / "v3s.onnx", dynamic_batch=True,
        metadata={"classes": classes, "preprocess": default_preprocess(224).to_dict(),
                  "model": classifier.config}).path}
    config = DetectConfig()
    detector = create_detector(backbone=config.backbone, width_mult=config.width, num_classes=6).eval()
    names = [f"object{i}" for i in range(6)]
    paths[f"CenterNet {config.backbone} {config.width} {config.image_size}"] = export(
        detector, "onnx", work / "detector.onnx", resolution=config.image_size, dynamic_batch=True,
        output_names=["heatmap", "size", "offset"],
        metadata={"classes": names, "category_ids": list(range(1, 7)), "image_size": config.image_size,
                  "model": detector.config}).path
    return paths


def _jpeg(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.radial_gradient("L").convert("RGB").resize(size).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _load(port: int, body: bytes, clients: int, seconds: float) -> tuple[float, float, float, int]:
    """Requests/s, p50 and p99 ms over `seconds` with `clients` keep-alive connections; errors counted."""
    latencies: list[float] = []
    errors = [0]
    stop = time.perf_counter() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.perf_counter() < stop:
            started = time.perf_counter()
            connection.request("POST", "/v1/predict", body=body, headers={"Content-Type": "image/jpeg"})
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors[0] += 1
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return len(latencies) / elapsed, statistics.median(latencies) * 1e3, p99 * 1e3, errors[0]


def _serve(model: Path, batch: int) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "mobilenets", "serve", "--model", str(model), "--port",
                               str(port), "--max-batch-size", str(batch)], stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, port
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise RuntimeError(f"the server for {model} did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", default="1,8,32")
    args = parser.parse_args()
    concurrency = [int(c) for c in args.clients.split(",")]
    print(f"CPU: {cpu.summary()}\n")
    print("| model | clients | batching req/s | p50 ms | p99 ms | batch-1 req/s | p50 ms | p99 ms | req/s ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as work:
        for (name, model), size in zip(_exported_models(Path(work)).items(), [(224, 224), (512, 384)], strict=True):
            body = _jpeg(size)
            results = {}
            for batch in (16, 1):
                server, port = _serve(model, batch)
                try:
                    _load(port, body, 1, 1.0)  # warm-up
                    results[batch] = {c: _load(port, body, c, args.seconds) for c in concurrency}
                finally:
                    server.terminate()
                    server.wait(30)
            for c in concurrency:
                (rate, p50, p99, _), (rate1, p50_1, p99_1, _) = results[16][c], results[1][c]
                print(f"| {name} | {c} | {rate:.0f} | {p50:.1f} | {p99:.1f} | {rate1:.0f} | {p50_1:.1f} | "
                      f"{p99_1:.1f} | {rate / rate1:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
