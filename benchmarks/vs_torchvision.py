"""The same architecture exported from torchvision and from us, both on onnxruntime with the same settings.

    python benchmarks/vs_torchvision.py [--runs 100] [--rounds 15] [--threads 2]

For V2, V3-Large and V3-Small at 224 px, batch 1: onnxruntime latency of torchvision's plain ONNX export (opset
18, dynamo exporter) against ours (`mobilenets export`: batch norm folded, native HardSwish/HardSigmoid,
squeeze-excitation kept in onnxruntime's blocked layout), timed in interleaved rounds that alternate which goes
first; then our best CPU path against torchvision eager. The ms columns are medians of per-round medians; the
ratio is the median of the per-round ratios, with their interquartile range: each round times both graphs back
to back, so a slow minute of the shared machine hits both sides (and the ratio need not equal ours / theirs ms). Beside
each latency: the physical limit, MAdds x 2 / this machine's measured matmul FLOP/s. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
import torchvision

import mobilenets
from mobilenets import cpu
from mobilenets.deploy import export_graph
from mobilenets.deploy.bench import matmul_flops
from mobilenets.deploy.runtime import onnx_session
from mobilenets.deploy.timing import interleaved, time_call

PAIRS = {"mobilenet_v2": torchvision.models.mobilenet_v2,
         "mobilenet_v3_large": torchvision.models.mobilenet_v3_large,
         "mobilenet_v3_small": torchvision.models.mobilenet_v3_small}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="timed runs per graph in each round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    if args.rounds < 2 or args.runs < 1:
        parser.error("--rounds must be at least 2 (the ratio's quartiles need two) and --runs at least 1")
    torch.set_num_threads(args.threads)
    flops = matmul_flops()
    x = torch.randn(1, 3, 224, 224)
    print(f"CPU: {cpu.summary()}")
    print(f"{args.threads} threads, matmul {flops / 1e9:.1f} GFLOP/s, median of {args.rounds} interleaved rounds "
          f"of {args.runs} runs\n")
    print("| model | torchvision eager ms | torchvision ONNX ms | ours ONNX ms | ours / torchvision ONNX | "
          "per-round ratio IQR | torchvision eager / ours | limit ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, constructor in PAIRS.items():
            torch.manual_seed(0)
            theirs = constructor().eval()
            weights = Path(tmp) / f"{name}.pth"  # the same random weights in both: the same function
            torch.save(theirs.state_dict(), weights)
            ours = mobilenets.create_model(name, weights=weights).eval()
            their_path = Path(tmp) / f"tv_{name}.onnx"
            torch.onnx.export(theirs, (x,), dynamo=True, opset_version=18).save(str(their_path))
            our_path = export_graph(ours, "onnx", Path(tmp) / f"ours_{name}.onnx", resolution=224)
            sessions = {"tv": onnx_session(their_path, args.threads), "ours": onnx_session(our_path, args.threads)}
            feed = {k: {s.get_inputs()[0].name: x.numpy()} for k, s in sessions.items()}
            runners = {key: lambda s=session, f=feed[key]: s.run(None, f) for key, session in sessions.items()}
            rounds = interleaved(runners, runs=args.runs * args.rounds, rounds=args.rounds)
            tv, mine = ([statistics.median(one) for one in rounds[key]] for key in ("tv", "ours"))
            with torch.inference_mode():
                eager = time_call(lambda m=theirs: m(x), runs=max(5, args.runs // 5))[0]
            low, middle, high = statistics.quantiles([o / t for o, t in zip(mine, tv, strict=True)], n=4)
            tv, mine = statistics.median(tv), statistics.median(mine)
            limit = 2 * mobilenets.profile(ours).madds / flops * 1e3
            print(f"| {name} | {eager:.2f} | {tv:.2f} | {mine:.2f} | {middle:.3f} | {low:.2f}–{high:.2f} | "
                  f"{eager / mine:.1f} | {limit:.2f} |")


if __name__ == "__main__":
    main()
