"""Timing primitives for benchmarks on a shared machine: one call, repeated calls after a warm-up, and runners
interleaved over rounds so that a slow minute falls on all of them alike; medians and 90th percentiles."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable


def seconds(fn: Callable[[], object]) -> float:
    """Wall time of one call of `fn`, in seconds."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_call(fn: Callable[[], object], *, warmup: int = 5, runs: int = 30) -> tuple[float, float]:
    """Median and 90th-percentile wall time of `fn` in ms, warm-up runs excluded."""
    for _ in range(warmup):
        fn()
    return median_p90([seconds(fn) * 1e3 for _ in range(runs)])


def median_p90(times: Iterable[float]) -> tuple[float, float]:
    """Median and 90th percentile of `times`."""
    times = sorted(times)
    return statistics.median(times), times[min(len(times) - 1, int(0.9 * len(times)))]


def round_count(runs: int, rounds: int) -> int:
    """How many rounds `interleaved` splits `runs` runs into: `rounds`, or fewer when there are fewer runs."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    return max(1, min(rounds, runs))


def interleaved(runners: dict[str, Callable[[], object]], *, runs: int, rounds: int = 5, warmup: int = 3,
                settle_s: float = 0.1,
                after_round: Callable[[], object] = lambda: None) -> dict[str, list[list[float]]]:
    """Wall times (ms) of each runner, `runs` runs split over `rounds` rounds (fewer if runs < rounds): per
    runner, a list per round. The runners take turns within a round, in an order reversed every other round,
    so a slow minute of a shared machine (and being first) falls on all of them alike. Each turn starts with
    untimed runs, at least `warmup` and `settle_s` seconds of them: the previous runner's threads (PyTorch's
    OpenMP pool, onnxruntime's) spin on the cores for a while after it."""
    rounds = round_count(runs, rounds)
    times: dict[str, list[list[float]]] = {key: [] for key in runners}
    for round_index in range(rounds):
        order = list(runners) if round_index % 2 == 0 else list(runners)[::-1]
        for key in order:
            start, done = time.perf_counter(), 0
            while done < warmup or time.perf_counter() - start < settle_s:
                runners[key]()
                done += 1
            this_round = runs // rounds + (round_index < runs % rounds)
            times[key].append([seconds(runners[key]) * 1e3 for _ in range(this_round)])
        after_round()
    return times
