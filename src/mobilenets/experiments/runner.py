"""Run an experiment: every variant x seed trained with the one training function of its task, each run in its
own folder (an interrupted experiment continues: finished runs are read back, an unfinished one resumes from
its last epoch), then costs from the profile and latencies on the CPU backends, then the report."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import logging
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from .. import cpu
from .._atomic import write_text
from ..deploy.bench import BACKENDS, make_runner
from ..deploy.timing import interleaved, median_p90
from ..profile import profile
from ..tasks import get_task
from .definitions import EXPERIMENTS, QUICK, Experiment, Variant
from .report import RunResult, write_report

log = logging.getLogger(__name__)

LATENCY_RUNS = 40
MAX_SEEDS = 100  # runs per variant; the papers' claims show with 3 to 5
_EPOCH_FIELDS = ("epoch", "lr", "seconds", "images_per_second")  # metrics.csv columns that describe the epoch


class ExperimentError(ValueError):
    """An experiment that cannot run as asked (unknown name, bad option); the message is one line."""


@dataclass(frozen=True)
class Plan:
    """What will run: the experiment, the seeds, the options every run shares, and where it all goes."""

    experiment: Experiment
    seeds: tuple[int, ...]
    shared: dict[str, Any]
    output: Path
    backends: tuple[str, ...]

    def run_folder(self, variant: Variant, seed: int) -> Path:
        slug = re.sub(r"[^a-z0-9]+", "-", variant.label.lower()).strip("-")
        return self.output / "runs" / f"{slug}-seed{seed}"


def plan(name: str, *, seeds: int = 3, epochs: int | None = None, quick: bool = False, data: str | None = None,
         output: str | Path | None = None, options: dict[str, Any] | None = None,
         backends: Sequence[str] | None = None) -> Plan:
    """The runs of experiment `name` (`options`: more training options for every run, e.g. a smaller built-in
    set; `backends`: the CPU backends to time, default the experiment's); ExperimentError for an unknown name or
    a bad option."""
    if name not in EXPERIMENTS:
        raise ExperimentError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    if seeds < 1 or (epochs is not None and epochs < 1):
        raise ExperimentError(f"--seeds and --epochs must be at least 1, got {seeds} and {epochs}")
    if seeds > MAX_SEEDS:
        raise ExperimentError(f"--seeds: at most {MAX_SEEDS}, got {seeds}")
    experiment = EXPERIMENTS[name]
    shared = {**experiment.base, **(QUICK[experiment.task] if quick else {})}
    if epochs is not None:
        shared["epochs"] = epochs
    if data is not None:
        shared = {k: v for k, v in shared.items() if not k.startswith("synthetic_")} | {"data": data}
    varied = {k for v in experiment.variants for k in v.options}
    if clash := sorted(varied & set(options or {})):
        raise ExperimentError(f"{clash[0]} is what experiment {name} varies: it cannot be set for every run")
    shared |= options or {}
    backends = experiment.backends if backends is None else tuple(backends)
    if unknown := [b for b in backends if b not in BACKENDS]:
        raise ExperimentError(f"unknown backend {unknown[0]!r}; choose from {', '.join(BACKENDS)}")
    return Plan(experiment, tuple(range(seeds)), shared, Path(output or Path("runs/experiments") / name),
                backends)


def run_experiment(name: str, *, seeds: int = 3, epochs: int | None = None, quick: bool = False,
                   data: str | None = None, output: str | Path | None = None, options: dict[str, Any] | None = None,
                   backends: Sequence[str] | None = None, progress: bool = True) -> Path:
    """Run (or continue) experiment `name` and write its report; returns the report's folder (report.md,
    results.csv, plot.png). Latencies are measured on the experiment's backends whose runtime is installed."""
    todo = plan(name, seeds=seeds, epochs=epochs, quick=quick, data=data, output=output, options=options,
                backends=backends)
    experiment, started = todo.experiment, time.perf_counter()
    runs = [(variant, seed) for seed in todo.seeds for variant in experiment.variants]
    for variant, seed in runs:  # every run's options checked before the first one trains
        training_config(experiment.task, train_options(todo, variant, seed))
    claimed = _claim_folder(todo)
    results: list[RunResult] = []
    try:
        with tqdm(runs, desc=f"experiment {name}", unit="run", disable=not progress, dynamic_ncols=True) as bar:
            for variant, seed in bar:
                bar.set_postfix_str(f"{variant.label}, seed {seed}")
                results.append(_trained(todo, variant, seed))
    except BaseException:
        if claimed and not results:  # nothing finished: the plan must not hold the folder against a corrected retry
            (todo.output / "plan.json").unlink(missing_ok=True)
            for folder in (todo.output / "runs", todo.output):  # once empty
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise
    backends = installed_backends(todo.backends)
    latency = _latencies(todo, backends, progress) if backends else {}
    return write_report(experiment, todo.shared, results, latency, todo.output,
                        minutes=(time.perf_counter() - started) / 60)


def _claim_folder(todo: Plan) -> bool:
    """Create the output folder with plan.json (the experiment and its shared options), or check that the one
    there is this plan's: finished runs are only read back into the experiment they were trained for. True if it
    wrote the plan."""
    wanted = {"experiment": todo.experiment.name, "shared": todo.shared}
    record = todo.output / "plan.json"
    if record.is_file():
        found = _recorded_plan(record)
        if found != json.loads(json.dumps(wanted)):
            differ = sorted(k for k in {*found.get("shared", {}), *todo.shared}
                            if found.get("shared", {}).get(k) != todo.shared.get(k))
            what = f"experiment {found.get('experiment')!r}" if found.get("experiment") != todo.experiment.name \
                else f"other options ({', '.join(differ)})"
            raise ExperimentError(f"{todo.output} holds {what}: give another --output, or the same options to "
                                  f"continue it")
        return False
    try:
        todo.output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExperimentError(f"{todo.output}: cannot create the output folder ({e.strerror})") from None
    write_text(record, json.dumps(wanted, indent=2))
    return True


def _recorded_plan(record: Path) -> dict[str, Any]:
    """A plan.json as `_claim_folder` wrote it, or ExperimentError naming the file."""
    try:
        found = json.loads(record.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExperimentError(f"{record}: not a plan this command wrote ({e})") from None
    if not isinstance(found, dict) or not isinstance(found.get("shared"), dict):
        raise ExperimentError(f"{record}: not a plan this command wrote (an object with experiment and shared)")
    return found


def train_options(todo: Plan, variant: Variant, seed: int) -> dict[str, Any]:
    """The training options of one run: the shared ones, the variant's, the seed and the run's folder."""
    return {**todo.shared, **variant.options, "seed": seed, "output": str(todo.run_folder(variant, seed)),
            "resume": True}


def _trained(todo: Plan, variant: Variant, seed: int) -> RunResult:
    """One run's result: read back if it finished before, else trained (resumed from its last epoch if any)."""
    folder = todo.run_folder(variant, seed)
    if not (folder / "summary.json").is_file():
        _train(todo.experiment.task, train_options(todo, variant, seed))
    return _read_run(todo.experiment.task, folder, variant, seed)


def training_config(task: str, options: dict[str, Any]) -> Any:
    """The task's checked training config for `options` (ConfigError naming a bad option)."""
    return get_task(task).make_config(**options)


def _train(task: str, options: dict[str, Any]) -> None:
    definition = get_task(task)
    definition.train(definition.make_config(**options), progress=False)


def _network(task: str, checkpoint: Path) -> torch.nn.Module:
    """The network a run of `task` trained, from its checkpoint."""
    return get_task(task).load(checkpoint).model


def _read_run(task: str, folder: Path, variant: Variant, seed: int) -> RunResult:
    """A finished run's last-epoch metrics, its seconds, and its network's parameters and MAdds."""
    reading = folder / "summary.json"
    try:
        seconds = float(json.loads(reading.read_text())["seconds"])
        reading = folder / "metrics.csv"
        with open(reading, newline="") as file:
            rows = list(csv.DictReader(file))
        if not rows:
            raise ValueError("no epoch in it")
        metrics = {k: float(v) for k, v in rows[-1].items() if v not in ("", None) and k not in _EPOCH_FIELDS}
        reading = folder / "config.yaml"
        image_size = int(yaml.safe_load(reading.read_text())["image_size"])
    except (OSError, ValueError, LookupError, TypeError, yaml.YAMLError) as e:  # the file's content, not our code
        reason = e.strerror if isinstance(e, OSError) else f"{type(e).__name__}: {e}"
        raise ExperimentError(f"{reading}: a finished run's file cannot be read ({reason}); remove {folder} to "
                              f"train the run again") from None
    cost = profile(_network(task, folder / "best.safetensors"), image_size)
    return RunResult(variant.label, seed, metrics, cost.params, cost.madds, seconds)


def installed_backends(backends: Sequence[str]) -> list[str]:
    """The backends whose runtime is installed (onnxruntime and ExecuTorch are extras); one log line for the
    others."""
    runtimes = {"onnxruntime": "onnxruntime", "executorch": "executorch"}
    missing = {b for b in backends for prefix, module in runtimes.items()
               if b.startswith(prefix) and importlib.util.find_spec(module) is None}
    if missing:
        log.info("not timed (runtime not installed): %s", ", ".join(sorted(missing)))
    return [b for b in backends if b not in missing]


def _latencies(todo: Plan, backends: list[str], progress: bool) -> dict[str, dict[str, float]]:
    """Median ms per image of each variant's network (seed 0's, at `Experiment.timing_size`, batch 1) on each
    backend, the variants interleaved per backend; cached in latency.json with the sizes, measured once."""
    experiment = todo.experiment
    sizes = {variant.label: experiment.timing_size(variant) for variant in experiment.variants}
    cache = todo.output / "latency.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.pop("sizes", None) == sizes and set(cached) - {"cpu"} == set(backends):
            return cached
    measured: dict[str, dict[str, float]] = {}
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as work:
        for backend in tqdm(backends, desc="latency", unit="backend", disable=not progress):
            runners = {}
            for i, variant in enumerate(experiment.variants):
                folder = Path(work) / f"{backend}-{i}"
                folder.mkdir()
                model = _network(experiment.task, todo.run_folder(variant, todo.seeds[0]) / "best.safetensors")
                size = sizes[variant.label]
                runners[variant.label] = make_runner(model.eval(), backend, torch.randn(1, 3, size, size), folder,
                                                     threads)
            times = interleaved(runners, runs=LATENCY_RUNS, rounds=5)
            measured[backend] = {label: round(median_p90([t for r in rounds for t in r])[0], 3)
                                 for label, rounds in times.items()}
    write_text(cache, json.dumps({**measured, "cpu": cpu.summary(), "sizes": sizes}, indent=2))
    return measured | {"cpu": cpu.summary()}
