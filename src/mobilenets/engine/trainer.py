"""`fit(task, config)`: the one training loop. It owns seeding, loaders, optimizer and schedule, resume, AMP, EMA,
data-parallel training under torchrun, gradient clipping, a stop on a non-finite loss, the per-epoch checkpoints
(`best.safetensors`, `last.pt`), metrics.csv, curves.png, summary.json and the progress bars; the task says
what is trained on what and how it is scored."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler

from .. import cpu
from .._atomic import write_text
from ..recipes import ConfigError
from ..weights.convert import STATE_FORMAT, WeightsError, load_torch_file
from ..weights.io import save, save_training_state
from .config import RESUMABLE_CHANGES, TrainingOptions
from .distributed import Distributed, average_buffers, choose_device, init_distributed, shutdown
from .loop import NonFiniteLossError, train_one_epoch
from .optim import make_optimizer, make_scheduler
from .run_files import MetricsFiles, discard_unfinished, run_folder, run_lock, start_logging
from .task import Task, TaskData

log = logging.getLogger("mobilenets")


class TrainingError(RuntimeError):
    """A run that cannot go on (the loss diverged, a failed overfit check); the message is one line and says what
    was kept. Bad input (a resume with other options, an output folder that cannot be used) is a ValueError."""


@dataclass
class TrainResult:
    """What a run produced: its summary (as in summary.json), the trained model, and the output folder."""

    summary: dict[str, Any]
    model: nn.Module
    output: Path


def fit(task: Task, config: TrainingOptions, *, progress: bool = True) -> TrainResult:
    """Train `task` as `config` says; return the summary (also `<output>/summary.json`) and the model.

    Under `torchrun`, each process trains its share of every batch; only rank 0 evaluates and writes files.
    """
    device = choose_device(config.device)
    job = init_distributed(device)
    try:
        asked = out = Path(config.output)
        if job.is_main:  # the other processes write nothing
            out = run_folder(asked, reuse=config.resume or config.exist_ok)
        config = dataclasses.replace(config, output=str(out))
        state_path = out / "last.pt"
        state = _read_state(state_path, task, config) if config.resume and state_path.is_file() else None
        task.check_inputs(config)
        created = job.is_main and not out.exists()
        try:
            with run_lock(out) if job.is_main else contextlib.nullcontext():
                handler = start_logging(log, out, job.is_main)
                try:
                    return _fit(task, config, state, device, job, asked, progress and job.is_main)
                except KeyboardInterrupt:
                    if job.is_main and state_path.is_file():
                        log.warning("interrupted: %s holds the last finished epoch; continue with --resume "
                                    "--output %s", state_path, out)
                    raise
                finally:
                    if handler is not None:
                        log.removeHandler(handler)
                        handler.close()
        except BaseException:
            if created:
                discard_unfinished(out)
            raise
    finally:
        shutdown(job)


def _loaders(config: TrainingOptions, data: TaskData, task: Task, job: Distributed, device: torch.device
             ) -> tuple[DistributedSampler, DataLoader, DataLoader]:
    """Training batches in an order fixed by (seed, epoch), so a resumed run sees what an uninterrupted one saw;
    each process takes its share. A training set smaller than one batch gives one smaller batch."""
    if config.batch_size % job.world_size:
        raise TrainingError(f"batch size {config.batch_size} does not split over {job.world_size} processes")
    sampler = DistributedSampler(data.train, num_replicas=job.world_size, rank=job.rank, shuffle=True,
                                 seed=config.seed, drop_last=True)
    per_process = min(config.batch_size // job.world_size, len(sampler))
    if per_process == 0:
        raise TrainingError(f"{len(data.train)} training images do not split over {job.world_size} processes")
    if per_process * job.world_size < config.batch_size:
        log.warning("%d training images are fewer than one batch of %d: batches of %d", len(data.train),
                    config.batch_size, per_process * job.world_size)
    cores = cpu.available_cores()
    workers = config.workers if config.workers is not None else (0 if data.built_in else min(4, cores))
    if workers > cores:
        log.warning("%d data-loading workers on %d cores would only contend: using %d", workers, cores, cores)
        workers = cores
    common = {"num_workers": workers, "pin_memory": device.type == "cuda", "collate_fn": data.collate}
    train = DataLoader(data.train, batch_size=per_process, sampler=sampler, drop_last=True, **common)
    val = DataLoader(data.val, batch_size=max(per_process, task.eval_batch_size), shuffle=False, **common)
    return sampler, train, val


def _read_state(path: Path, task: Task, config: TrainingOptions) -> dict[str, Any]:
    """A run's `last.pt`, read before any work: WeightsError for a file that is not one or is another task's,
    ConfigError for a run whose options outside RESUMABLE_CHANGES (those that do not change the result) differ
    from `config`."""
    state = load_torch_file(path)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise WeightsError(f"{path}: not a mobilenets training checkpoint")
    if state.get("task") != task.name:
        raise WeightsError(f"{path}: the checkpoint of a {state.get('task')} run, not of a {task.name} run")
    before = {k: v for k, v in state["train_config"].items() if k not in RESUMABLE_CHANGES}
    now = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_CHANGES}
    if changed := sorted(k for k in now if before.get(k) != now[k]):
        raise ConfigError(f"{path}: cannot resume with a different {changed[0]} "
                          f"({before.get(changed[0])!r} in the run, {now[changed[0]]!r} now)")
    return state


def _restore(state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LRScheduler, ema: AveragedModel | None) -> None:
    """Load a checked `last.pt` (see `_read_state`) into everything that trains."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if ema is not None:
        ema.load_state_dict(state["ema_averager"])


def _fit(task: Task, config: TrainingOptions, state: dict[str, Any] | None, device: torch.device,
         job: Distributed, asked: Path, progress: bool) -> TrainResult:
    out = Path(config.output)
    state_path = out / "last.pt"
    torch.manual_seed(config.seed)
    data = task.build_data(config, progress)
    log.info("data: %s", data.description)
    for path, reason in data.skipped:
        log.warning("skipped %s: %s", path, reason)
    model = task.build_model(config, data).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    sampler, train_loader, val_loader = _loaders(config, data, task, job, device)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, len(train_loader))
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True) \
        if config.ema else None
    start, history, best_epoch = 0, [], 0
    if state is not None:
        _restore(state, model, optimizer, scheduler, ema)
        start, history = state["epoch"], list(state["history"])
        best_epoch = state.get("best_epoch", state.get("best", {}).get("epoch", 0))  # older: {"best": {"epoch"}}
        log.info("resuming %s after epoch %d of %d", state_path, start, config.epochs)
    elif config.resume:
        log.info("nothing to resume in %s: starting from scratch", out)
    if job.is_main:
        write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    trained = DistributedDataParallel(model) if job.enabled else model
    amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if amp else None
    criterion = task.build_loss(config, data, model)
    log.info("model: %s, %s parameters, on %s%s", task.describe_model(config, data),
             f"{sum(p.numel() for p in model.parameters()):,}", device,
             f", {job.world_size} processes" if job.enabled else "")
    log.info("CPU: %s", cpu.summary())
    log.info("output: %s%s", out, f" ({asked} holds another run; --exist-ok would replace it)" if out != asked else "")
    metrics = MetricsFiles(out, ("epoch", "lr", "train_loss", "val_loss", *task.scores, "images_per_second",
                                 "seconds"), task.scores, task.score_label)
    for epoch in range(start, config.epochs):
        sampler.set_epoch(epoch)
        data.train.set_epoch(epoch)
        torch.manual_seed(config.seed * 1_000_003 + epoch)  # dropout: the same draws after a resume
        try:
            stats = train_one_epoch(
                trained, train_loader, optimizer, scheduler, criterion, device, epoch=epoch, amp=amp,
                channels_last=config.channels_last, clip_grad=config.clip_grad, scaler=scaler,
                after_step=(lambda: ema.update_parameters(model)) if ema is not None else None,
                progress=progress, description=f"epoch {epoch + 1}/{config.epochs}",
                keep_eval=task.frozen_part(config, model), all_true=job.all_true)
        except NonFiniteLossError as e:
            kept = f"the last good checkpoint is {state_path}" if state_path.is_file() else "no checkpoint was written"
            raise TrainingError(f"{e}; stopping ({kept})") from None
        average_buffers(model, job)
        if job.is_main:
            deployed = ema.module if ema is not None else model
            scores = task.evaluate(config, deployed, val_loader, device, data, amp=amp, progress=progress)
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": stats.loss,
                   "val_loss": scores["val_loss"], **{k: scores[k] for k in task.scores},
                   "images_per_second": stats.images_per_second * job.world_size, "seconds": stats.seconds}
            history.append(row)
            meta = {**data.meta, "task": task.name, "metrics": row, "train_config": config.to_dict()}
            if not best_epoch or row[task.best] > history[best_epoch - 1][task.best]:
                best_epoch = epoch + 1
                save(deployed, out / "best.safetensors", meta=meta)
            save_training_state(state_path, task.name, {
                "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "history": history, "best_epoch": best_epoch,
                "train_config": config.to_dict(), "model_config": model.config, "meta": meta,
                **({"model_ema": ema.module.state_dict(), "ema_averager": ema.state_dict()} if ema else {})})
            metrics.update(history)
            log.info("epoch %d/%d  train loss %.4f  val loss %.4f  %s  %.0f images/s  %.0fs", epoch + 1,
                     config.epochs, stats.loss, row["val_loss"], task.describe_scores(row), row["images_per_second"],
                     stats.seconds)
        if job.agree(job.is_main and task.stop_early(config, history)):
            break
    best = history[best_epoch - 1] if history else {}
    summary = {**task.summary(config, history, best), "epochs": config.epochs, "best_epoch": best_epoch,
               "train_images": len(data.train), "val_images": len(data.val), "classes": data.classes,
               "skipped_files": len(data.skipped), "skipped": [f"{p}: {r}" for p, r in data.skipped],
               "seconds": round(sum(r["seconds"] for r in history), 1), "output": str(out),
               "cpu": cpu.summary()}  # results are reproducible on the same CPU, instruction set and thread count
    if job.is_main:
        metrics.finish(history)
        write_text(out / "summary.json", json.dumps(summary, indent=2))
        if best:
            log.info("best %s at epoch %d; checkpoints in %s", task.describe_scores(best), best_epoch, out)
        task.check_result(config, history)
    return TrainResult(summary, model, out)
