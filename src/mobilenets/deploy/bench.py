"""CPU latency of zoo models on the usual inference paths, measured in one run so the ratios are comparable.

Each model × backend × batch is timed after a warm-up (median and 90th percentile); beside each latency, the
physical limit: multiply-adds × 2 / the machine's measured fp32 matrix-multiply FLOP/s. The reports name the CPU
and its instruction sets (`mobilenets.cpu`), since they decide the kernels and so the ratios.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from itertools import chain
from pathlib import Path

import torch
from tqdm import tqdm

from .. import cpu
from .._atomic import write_text
from ..data.transforms import default_preprocess
from ..models import build_model
from ..profile import profile
from ..weights.registry import list_published
from .executorch import export_pte
from .export import export_graph, fold_batchnorm
from .formats import load_exported
from .quantize import calibration_batches, quantize
from .runtime import OnnxModel
from .timing import interleaved, median_p90, round_count, seconds

BACKENDS = ("eager", "channels_last", "torchscript", "compile", "onnxruntime", "onnxruntime-int8", "executorch",
            "executorch-int8")


@dataclass
class Measurement:
    """One model × backend × batch: latency per batch (ms) and the compute-bound floor for it."""

    model: str
    backend: str
    batch: int
    median_ms: float
    p90_ms: float
    madds: int
    limit_ms: float
    top1: float | None


def matmul_flops(size: int = 1024, repeats: int = 10) -> float:
    """This machine's fp32 FLOP/s on a square matrix multiply with the current thread count (best of runs)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best


def make_runner(model: torch.nn.Module, backend: str, x: torch.Tensor, work: Path,
                threads: int) -> Callable[[], object]:
    """A no-argument callable that runs one inference of `model` on `x` with `backend` (ExecuTorch programs take
    batch 1: a larger batch runs image by image)."""
    images = x.numpy()
    calibration = calibration_batches(None, default_preprocess(x.shape[-1]), images=32) \
        if backend.endswith("-int8") else None
    if backend.startswith("onnxruntime"):
        path = export_graph(model, "onnx", work / "fp32.onnx", resolution=x.shape[-1], dynamic_batch=True)
        if calibration is not None:
            path = quantize(path, work / "int8.onnx", calibration)
        session = OnnxModel(path, threads)
        return lambda: session.run(images)
    if backend.startswith("executorch"):
        program = load_exported(export_pte(model, work / f"{backend}.pte", resolution=x.shape[-1],
                                           calibration=calibration), threads=threads)
        return lambda: program.run(images)
    folded = fold_batchnorm(model)
    if backend == "channels_last":
        folded, x = folded.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    elif backend == "torchscript":
        folded = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(folded)))
    elif backend == "compile":
        folded = torch.compile(folded)

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return folded(x)

    return run


def benchmark(models: Iterable[str], backends: Iterable[str], batches: Iterable[int], *, resolution: int = 224,
              threads: int | None = None, runs: int = 30, rounds: int = 5, progress: bool = True) -> list[Measurement]:
    """Time every model × backend × batch; returns the measurements (fp32 limit from a measured matmul).

    A model's backends at one batch size are timed interleaved (`interleaved`: `runs` runs per backend over
    `rounds` rounds), so their ratios hold even when the machine's speed drifts during the run."""
    models, backends, batches = list(models), list(backends), list(batches)
    if unknown := [b for b in backends if b not in BACKENDS]:
        raise ValueError(f"unknown backend {unknown[0]!r}; choose from {', '.join(BACKENDS)}")
    if threads is not None:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    flops = matmul_flops()
    measured: dict[tuple[str, str, int], Measurement] = {}
    bar = tqdm(total=len(models) * len(batches) * round_count(runs, rounds), desc="benchmark",
               disable=not progress, unit="round")
    with tempfile.TemporaryDirectory() as tmp, bar:
        for name in models:
            torch.manual_seed(0)
            model = build_model(name).eval()
            published = [w.top1 for w in list_published(name) if w.source == "torchvision"]
            for batch in batches:
                x = torch.randn(batch, 3, resolution, resolution)
                runners = {}
                for backend in backends:
                    work = Path(tmp) / f"{name}-{backend}-{batch}"
                    work.mkdir()
                    runners[backend] = make_runner(model, backend, x, work, threads)
                times = interleaved(runners, runs=runs, rounds=rounds, after_round=bar.update)
                madds = profile(model, resolution).madds * batch
                for backend in backends:
                    median, p90 = median_p90(chain.from_iterable(times[backend]))
                    measured[name, backend, batch] = Measurement(name, backend, batch, median, p90, madds,
                                                                 2 * madds / flops * 1e3,
                                                                 max(published) if published else None)
    return [measured[m, b, n] for m in models for b in backends for n in batches]


def write_reports(results: list[Measurement], out: Path, title: str) -> list[Path]:
    """bench.csv, bench.md (under `title`, the CPU's summary line) and pareto.png (latency against top-1 and
    against MAdds) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [asdict(r) for r in results]
    lines = [",".join(rows[0])] + [",".join(str(v) for v in row.values()) for row in rows]
    write_text(out / "bench.csv", "\n".join(lines) + "\n")
    md = [f"# {title}", "", f"CPU: {cpu.summary()}", "",
          "| model | backend | batch | median ms | p90 ms | limit ms | limit / median |",
          "|---|---|---:|---:|---:|---:|---:|"]
    md += [f"| {r.model} | {r.backend} | {r.batch} | {r.median_ms:.2f} | {r.p90_ms:.2f} | {r.limit_ms:.2f} | "
           f"{r.limit_ms / r.median_ms:.2f} |" for r in results]
    md += ["", *_fastest(results)]
    write_text(out / "bench.md", "\n".join(md) + "\n")
    written = [out / "bench.csv", out / "bench.md"]
    if _pareto(results, out / "pareto.png"):
        written.append(out / "pareto.png")
    return written


def _fastest(results: list[Measurement]) -> list[str]:
    """One line per model and batch: the backend to ship on this CPU, and how much faster it is than the next."""
    lines = []
    for key in dict.fromkeys((r.model, r.batch) for r in results):
        ranked = sorted((r for r in results if (r.model, r.batch) == key), key=lambda r: r.median_ms)
        if len(ranked) > 1:
            lines.append(f"- {key[0]}, batch {key[1]}: fastest here {ranked[0].backend} ({ranked[0].median_ms:.2f} "
                         f"ms, {ranked[0].median_ms / ranked[1].median_ms:.2f}x {ranked[1].backend})")
    return lines


def _pareto(results: list[Measurement], path: Path) -> bool:
    from ..plots import pyplot, save_figure

    plt = pyplot()
    if plt is None:
        return False
    fig, (by_top1, by_madds) = plt.subplots(1, 2, figsize=(11, 4))
    for backend in dict.fromkeys(r.backend for r in results):
        chosen = [r for r in results if r.backend == backend and r.batch == min(x.batch for x in results)]
        with_top1 = [r for r in chosen if r.top1 is not None]
        by_top1.plot([r.median_ms for r in with_top1], [r.top1 for r in with_top1], "o", label=backend)
        by_madds.plot([r.madds / 1e6 for r in chosen], [r.median_ms for r in chosen], "o", label=backend)
    by_top1.set(xlabel="latency (ms)", ylabel="published ImageNet top-1 (%)", title="Accuracy against latency")
    by_madds.set(xlabel="multiply-adds (M)", ylabel="latency (ms)", title="Latency against MAdds")
    for ax in (by_top1, by_madds):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)
    plt.close(fig)
    return True
