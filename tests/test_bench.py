"""`mobilenets bench`: measurements for every requested combination, reports on disk, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mobilenets import cpu
from mobilenets.deploy.bench import benchmark, write_reports
from mobilenets.deploy.timing import interleaved, time_call

pytest.importorskip("onnxruntime")


def test_benchmark_measures_each_combination_and_writes_reports(tmp_path):
    results = benchmark(["mobilenet_v3_small"], ["eager", "torchscript", "onnxruntime"], [1, 2], resolution=64,
                        runs=2, progress=False)
    assert [(r.backend, r.batch) for r in results] == [(b, n) for b in ("eager", "torchscript", "onnxruntime")
                                                        for n in (1, 2)]
    assert all(0 < r.median_ms <= r.p90_ms and r.limit_ms > 0 for r in results)
    assert results[1].madds == 2 * results[0].madds  # MAdds per batch
    assert results[0].top1 == pytest.approx(67.668)  # torchvision's published V3-Small
    files = write_reports(results, tmp_path, "test")
    assert {p.name for p in files} == {"bench.csv", "bench.md", "pareto.png"}
    assert len((tmp_path / "bench.csv").read_text().splitlines()) == 1 + len(results)
    fastest = [line for line in (tmp_path / "bench.md").read_text().splitlines() if "fastest here" in line]
    for batch, line in zip((1, 2), fastest, strict=True):
        best = min((r for r in results if r.batch == batch), key=lambda r: r.median_ms)
        assert line.startswith(f"- mobilenet_v3_small, batch {batch}: fastest here {best.backend} (")


def test_executorch_backends_take_their_turn(tmp_path):
    pytest.importorskip("executorch")
    results = benchmark(["mobilenet_v1"], ["eager", "executorch"], [1, 2], resolution=64, runs=2,
                        progress=False)
    assert [(r.backend, r.batch) for r in results] == [("eager", 1), ("eager", 2), ("executorch", 1),
                                                        ("executorch", 2)]
    assert all(0 < r.median_ms <= r.p90_ms for r in results)


def test_time_call_orders_median_and_p90():
    median, p90 = time_call(lambda: sum(range(1000)), warmup=1, runs=11)
    assert 0 < median <= p90


def test_interleaved_rounds_alternate_which_runner_goes_first():
    calls = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, runs=6, rounds=3,
                        warmup=1, settle_s=0)
    assert "".join(calls) == "aaabbb" + "bbbaaa" + "aaabbb"  # each turn: one warm-up run, then two timed
    assert [len(one_round) for one_round in times["a"]] == [2, 2, 2]


def test_interleaved_splits_the_runs_over_the_rounds():
    times = interleaved({"a": lambda: None}, runs=7, rounds=3, warmup=0, settle_s=0)
    assert [len(one_round) for one_round in times["a"]] == [3, 2, 2]
    assert len(interleaved({"a": lambda: None}, runs=2, rounds=5, warmup=0, settle_s=0)["a"]) == 2
    with pytest.raises(ValueError, match="runs must be at least 1"):
        interleaved({"a": lambda: None}, runs=0)


def test_unknown_backend_is_refused():
    done = subprocess.run([sys.executable, "-m", "mobilenets", "bench", "--backends", "tensorrt"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "unknown backend 'tensorrt'" in done.stderr


def test_bench_command_prints_json_and_writes_reports(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mobilenets", "bench", "--models", "mobilenet_v3_small",
                           "--backends", "eager", "--resolution", "32", "--runs", "3", "--rounds", "2", "--json",
                           "--output", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [(r["model"], r["backend"], r["batch"]) for r in report["results"]] == [("mobilenet_v3_small", "eager", 1)]
    assert (tmp_path / "bench.csv").is_file() and (tmp_path / "bench.md").is_file()
    assert report["cpu"] == json.loads(json.dumps(cpu.describe().to_dict()))  # where it was measured
    assert (tmp_path / "bench.md").read_text().splitlines()[2] == f"CPU: {cpu.summary()}"
