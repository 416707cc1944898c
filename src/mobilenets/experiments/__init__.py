"""The papers' design claims as one-command experiments: `run_experiment(name)` trains every variant over seeds
and writes a report with mean ± std, each claim judged against the noise, costs and CPU latencies."""

from .definitions import EXPERIMENTS, Claim, Experiment, Variant, list_experiments
from .runner import ExperimentError, plan, run_experiment

__all__ = ["EXPERIMENTS", "Claim", "Experiment", "ExperimentError", "Variant", "list_experiments", "plan",
           "run_experiment"]
