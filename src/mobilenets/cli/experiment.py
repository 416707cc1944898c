"""`mobilenets experiment NAME`: one of the papers' design claims as a controlled comparison over seeds."""

from __future__ import annotations

import argparse

from ..deploy.bench import BACKENDS
from ..experiments import EXPERIMENTS, run_experiment
from ..recipes import path_text, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `experiment`."""
    p = subparsers.add_parser(
        "experiment", help="check a paper's design claim: train its variants over seeds, report mean ± std",
        description="Train every variant of the experiment over --seeds seeds on the same data and schedule, then "
                    "write report.md (mean ± std, each run, each claim judged against the noise, parameters, "
                    "MAdds, CPU latencies), results.csv and plot.png. Interrupted, it continues where it stopped "
                    "when run again with the same options.",
        epilog="experiments: " + "; ".join(f"{name}: {e.summary}" for name, e in EXPERIMENTS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME", choices=list(EXPERIMENTS), help=f"one of {', '.join(EXPERIMENTS)}")
    p.add_argument("--seeds", type=positive_int, default=3, metavar="N", help="runs per variant (3)")
    p.add_argument("--epochs", type=positive_int, metavar="N", help="training epochs (default: the experiment's)")
    p.add_argument("--quick", action="store_true", help="a smaller schedule for a first look (few claims resolve)")
    p.add_argument("--data", metavar="DIR", help="the task's data instead of the built-in set")
    p.add_argument("--backends", metavar="B,B", help=f"CPU backends to time the variants on, of "
                                                     f"{', '.join(BACKENDS)} (default: the experiment's; "
                                                     f"'none' for none)")
    p.add_argument("--output", type=path_text, metavar="DIR", help="default: runs/experiments/NAME")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run or continue the experiment; print where its report is."""
    backends = None if args.backends is None else [b for b in args.backends.split(",") if b and b != "none"]
    out = run_experiment(args.name, seeds=args.seeds, epochs=args.epochs, quick=args.quick, data=args.data,
                         output=args.output, backends=backends)
    print(f"report: {out / 'report.md'}, {out / 'results.csv'}, {out / 'plot.png'}")
    print((out / "report.md").read_text())
    return 0
