"""An experiment's report: mean ± standard deviation over seeds with every run listed, each claim judged against
the noise (a difference within about two standard errors is "not resolved at this budget"), costs and
latencies, as report.md, results.csv and plot.png."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import cpu
from .._atomic import write_text
from ..plots import pyplot, save_figure
from .definitions import LOWER_IS_BETTER, Claim, Experiment

RESOLVED_AT = 2.0  # standard errors of the difference: about 95% confidence for a normal difference


@dataclass(frozen=True)
class RunResult:
    """One trained run: its variant, seed, last-epoch metrics, network size and training time."""

    variant: str
    seed: int
    metrics: dict[str, float]
    params: int
    madds: int
    seconds: float


@dataclass(frozen=True)
class Verdict:
    """A claim against the measurements: the difference (better minus worse, in the metric's good direction),
    its noise (two standard errors), and what that says."""

    claim: Claim
    difference: float
    noise: float
    outcome: str


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for one value: no estimate of the noise)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def judge(claim: Claim, better: Sequence[float], worse: Sequence[float]) -> Verdict:
    """Whether the runs support `claim`: resolved when the means differ by more than RESOLVED_AT standard
    errors of the difference; with one seed per arm nothing is resolved (no estimate of the noise)."""
    sign = -1.0 if claim.metric in LOWER_IS_BETTER else 1.0
    difference = sign * (statistics.fmean(better) - statistics.fmean(worse))
    if len(better) < 2 or len(worse) < 2:
        return Verdict(claim, difference, math.nan, "not resolved: one seed gives no estimate of the noise")
    noise = RESOLVED_AT * math.sqrt(statistics.variance(better) / len(better)
                                    + statistics.variance(worse) / len(worse))
    resolved = abs(difference) > noise
    if claim.similar:
        outcome = ("does not hold: they differ" if resolved else
                   "consistent: no difference resolved at this budget")
    elif not resolved:
        outcome = "not resolved at this budget"
    else:
        outcome = "holds" if difference > 0 else "does not hold: the reverse is resolved"
    return Verdict(claim, difference, noise, outcome)


def by_variant(results: Sequence[RunResult], metric: str) -> dict[str, list[float]]:
    """Each variant's values of `metric`, in seed order."""
    values: dict[str, list[float]] = {}
    for r in sorted(results, key=lambda r: r.seed):
        values.setdefault(r.variant, []).append(r.metrics[metric])
    return values


def cost_exponent(results: Sequence[RunResult], factors: dict[str, float]) -> float:
    """The exponent k of MAdds ~ factor^k fitted by least squares on logs (2 for the papers' α² and ρ² rules)."""
    madds = {r.variant: r.madds for r in results}
    xs = [math.log(factors[v]) for v in factors]
    ys = [math.log(madds[v]) for v in factors]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def write_report(experiment: Experiment, shared: dict[str, Any], results: list[RunResult],
                 latency: dict[str, Any], out: Path, *, minutes: float) -> Path:
    """report.md, results.csv and plot.png in `out` for `results` of `experiment` run with the `shared`
    training options; returns `out`."""
    seeds = len({r.seed for r in results})
    labels = [v.label for v in experiment.variants]
    metrics = experiment.metrics
    values = {m: by_variant(results, m) for m in metrics}
    cost = {r.variant: (r.params, r.madds) for r in results}
    lines = [f"# Experiment `{experiment.name}`", "", experiment.summary + ".", "",
             f"{seeds} seeds per variant; shared options: " + ", ".join(f"{k}={v}" for k, v in shared.items()) + ".",
             f"Machine: {cpu.summary()}. Took {minutes:.1f} min this time (runs finished earlier are read back).",
             "", "| variant | " + " | ".join(f"{m} (mean ± std)" for m in metrics)
             + " | params | MAdds | runs (" + metrics[0] + ") |",
             "|---|" + "---:|" * (len(metrics) + 2) + "---|"]
    for label in labels:
        cells = [_mean_std_cell(values[m][label]) for m in metrics]
        runs = ", ".join(f"{v:.4f}" for v in values[metrics[0]][label])
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {cost[label][0] / 1e6:.2f}M | "
                     f"{cost[label][1] / 1e6:.1f}M | {runs} |")
    lines += ["", "## Claims", "", "| claim | metric | difference | noise (2 SE) | outcome |",
              "|---|---|---:|---:|---|"]
    claimed = {c.metric: by_variant(results, c.metric) for c in experiment.claims}
    verdicts = [judge(c, claimed[c.metric][c.better], claimed[c.metric][c.worse]) for c in experiment.claims]
    for v in verdicts:
        lines.append(f"| {v.claim.text} ({v.claim.better} vs {v.claim.worse}) | {v.claim.metric} | "
                     f"{v.difference:+.4f} | {v.noise:.4f} | {v.outcome} |")
    if experiment.scaling:
        factors = {v.label: float({**shared, **v.options}[experiment.scaling]) for v in experiment.variants}
        lines += ["", f"MAdds against {experiment.scaling}: fitted exponent "
                      f"{cost_exponent(results, factors):.2f} (the papers' rule: 2)."]
    if latency:
        backends = [b for b in latency if b != "cpu"]
        lines += ["", f"## Latency (ms per image, batch 1, {experiment.timing_size_label()}, median; "
                      f"{latency['cpu']})", "", "| variant | " + " | ".join(backends) + " |",
                  "|---|" + "---:|" * len(backends)]
        lines += [f"| {label} | " + " | ".join(f"{latency[b][label]:.2f}" for b in backends) + " |"
                  for label in labels]
    write_text(out / "report.md", "\n".join(lines) + "\n")
    write_text(out / "results.csv", _csv(results))
    _plot(experiment.name, labels, values, cost, latency, out / "plot.png")
    return out


def _mean_std_cell(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def _csv(results: Sequence[RunResult]) -> str:
    metrics = sorted({k for r in results for k in r.metrics})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["variant", "seed", *metrics, "params", "madds", "training_seconds"])
    for r in results:
        writer.writerow([r.variant, r.seed, *(r.metrics.get(m, "") for m in metrics), r.params, r.madds, r.seconds])
    return buffer.getvalue()


def _plot(name: str, labels: list[str], values: dict[str, dict[str, list[float]]],
          cost: dict[str, tuple[int, int]], latency: dict[str, Any], path: Path) -> None:
    """Each metric per variant as mean ± std with the runs as dots; beside them the first metric against MAdds
    (where the variants' costs differ) and against the latency on onnxruntime, the deployment runtime (else on
    the first backend timed)."""
    plt = pyplot()
    if plt is None:
        return
    metrics = list(values)
    against: list[tuple[str, str, dict[str, float]]] = []  # (title, axis label, x per variant)
    if len({cost[label][1] for label in labels}) > 1:
        against.append(("MAdds", "MAdds (M)", {label: cost[label][1] / 1e6 for label in labels}))
    timed = [b for b in latency if b != "cpu"]
    if backend := "onnxruntime" if "onnxruntime" in timed else next(iter(timed), None):
        against.append(("latency", f"ms per image, {backend}", latency[backend]))
    panels = len(metrics) + len(against)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=False):
        for i, label in enumerate(labels):
            runs = values[metric][label]
            mean, std = mean_std(runs)
            ax.errorbar([i], [mean], yerr=[0 if math.isnan(std) else std], fmt="o", capsize=4, color="C0")
            ax.scatter([i] * len(runs), runs, s=10, color="C1", zorder=3)
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
        ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.set_title(f"{metric} (mean ± std, runs as dots)")
    first = metrics[0]
    for ax, (title, axis_label, x) in zip(axes[0][len(metrics):], against, strict=True):
        for label in labels:
            mean, std = mean_std(values[first][label])
            ax.errorbar([x[label]], [mean], yerr=[0 if math.isnan(std) else std], fmt="o", capsize=4)
            ax.annotate(label, (x[label], mean), fontsize=8, xytext=(4, 4), textcoords="offset points")
        if max(x.values()) > 4 * min(x.values()):
            ax.set_xscale("log")
            ax.minorticks_off()
            ticks = sorted(set(x.values()))
            ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks])
        ax.set_xlabel(axis_label)
        ax.set_title(f"{first} against {title}")
    fig.suptitle(f"experiment {name}")
    save_figure(fig, path)
    plt.close(fig)
