"""`mobilenets.train`: a classification run from a config to an output folder of checkpoints, metrics and plots."""

from __future__ import annotations

import json
import logging
import os
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
from ..models import MobileNet, build_model, create_model
from ..runs import (
    MetricsFiles,
    ResumeError,
    make_optimizer,
    make_scheduler,
    restore_run,
    save_training_state,
    start_logging,
)
from ..weights.convert import checkpoint_num_classes, load_into
from ..weights.io import save
from ..weights.registry import open_weights
from .checkpoint import TASK
from .config import TrainConfig, make_config
from .data import ClassificationData, build_data
from .distributed import Distributed, average_buffers, choose_device, init_distributed, shutdown
from .engine import NonFiniteLossError, evaluate_loader, train_one_epoch

log = logging.getLogger("mobilenets.train")
METRICS = ("epoch", "lr", "train_loss", "val_loss", "top1", "top5", "images_per_second", "seconds")
# options that may change between an interrupted run and its resumption without changing the result
RESUMABLE_CHANGES = {"resume", "workers", "output", "device"}


class TrainingError(RuntimeError):
    """A run that cannot go on (e.g. the loss diverged); the message says what happened and what was kept."""


@dataclass
class TrainResult:
    """What a run produced: its summary (as in summary.json), the trained model, and the output folder."""

    summary: dict[str, Any]
    model: MobileNet
    output: Path


def train(config: TrainConfig | None = None, *, recipe: str | Path | None = None, progress: bool = True,
          **options: Any) -> TrainResult:
    """Train a classifier; return its summary (also written to `<output>/summary.json`) and the model.

    Give a TrainConfig, or a YAML `recipe` and/or options by name (`model=`, `epochs=`, `data=`, ...).
    Under `torchrun`, each process trains its share of every batch; only rank 0 writes files.
    """
    config = config or make_config(recipe, **options)
    device = choose_device(config.device)
    job = init_distributed(device)
    out = Path(config.output)
    handler = start_logging(log, out, job.is_main)
    try:
        return _train(config, device, job, out, progress and job.is_main)
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        shutdown(job)


def _build_model(config: TrainConfig, num_classes: int) -> MobileNet:
    """A fresh model, or one initialised from `--pretrained` (our checkpoint, torchvision/timm file, registry name)."""
    if config.pretrained is None:
        return create_model(config.model, width_mult=config.width, num_classes=num_classes, dropout=config.dropout)
    checkpoint, preset = open_weights(config.pretrained, config.model)
    width = preset.pop("width_mult", config.width)
    model = build_model(config.model, width_mult=width, num_classes=num_classes, dropout=config.dropout, **preset)
    pretrained_classes = checkpoint_num_classes(model, checkpoint)
    reinit = pretrained_classes != num_classes
    load_into(model, checkpoint, skip_classifier=reinit)
    note = (f"; its classifier has {pretrained_classes} classes and this data {num_classes}: the classifier is "
            f"re-initialised" if reinit else "")
    log.info("initialised from %s (%s layout)%s", config.pretrained, checkpoint.layout, note)
    return model


def _loaders(config: TrainConfig, data: ClassificationData, job: Distributed, device: torch.device):
    if config.batch_size % job.world_size:
        raise TrainingError(f"batch size {config.batch_size} does not split over {job.world_size} processes")
    sampler = DistributedSampler(data.train, num_replicas=job.world_size, rank=job.rank, shuffle=True,
                                 seed=config.seed, drop_last=True)
    per_process = config.batch_size // job.world_size
    if len(sampler) < per_process:
        raise TrainingError(f"{len(data.train)} training images are fewer than one batch of {config.batch_size}")
    workers = config.workers if config.workers is not None else (0 if config.data is None else
                                                                 min(4, os.cpu_count() or 1))
    common = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    train = DataLoader(data.train, batch_size=per_process, sampler=sampler, drop_last=True, **common)
    val = DataLoader(data.val, batch_size=max(per_process, 64), shuffle=False, **common)
    return sampler, train, val


def _meta(config: TrainConfig, data: ClassificationData, history: list[dict[str, float]]) -> dict[str, Any]:
    """What eval and predict need beside the weights: class names, preprocessing, the run's last metrics."""
    return {"classes": data.classes, "preprocess": data.preprocess.to_dict(),
            "metrics": history[-1] if history else {}, "train_config": config.to_dict()}


def _resume(state_path: Path, config: TrainConfig, model: MobileNet, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LambdaLR, ema: AveragedModel | None,
            ) -> tuple[int, list[dict[str, float]], dict[str, float]]:
    """Restore a run from its `last.pt`; refuses when an option that changes the result differs."""
    try:
        state = restore_run(state_path, TASK, config, RESUMABLE_CHANGES, model, optimizer, scheduler)
    except ResumeError as e:
        raise TrainingError(str(e)) from None
    if ema is not None:
        ema.load_state_dict(state["ema_averager"])
    log.info("resuming %s after epoch %d of %d", state_path, state["epoch"], config.epochs)
    return state["epoch"], list(state["history"]), dict(state["best"])


def _train(config: TrainConfig, device: torch.device, job: Distributed, out: Path, progress: bool) -> TrainResult:
    torch.manual_seed(config.seed)
    data = build_data(config, progress)
    log.info("data: %s", data.description)
    for path, reason in data.skipped:
        log.warning("skipped %s: %s", path, reason)
    model = _build_model(config, len(data.classes)).to(device)
    if config.freeze_backbone:
        model.features.requires_grad_(False)
    channels_last = config.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    sampler, train_loader, val_loader = _loaders(config, data, job, device)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, len(train_loader))
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True) \
        if config.ema else None
    state_path = out / "last.pt"
    start, history, best = 0, [], {"top1": -1.0, "epoch": 0}
    if config.resume and state_path.is_file():
        start, history, best = _resume(state_path, config, model, optimizer, scheduler, ema)
    elif config.resume:
        log.info("nothing to resume in %s: starting from scratch", out)
    if job.is_main:
        write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    trained = DistributedDataParallel(model) if job.enabled else model
    amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if amp else None
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    log.info("model: %s α=%g, %d classes, %s on %s%s", config.model, config.width, len(data.classes),
             f"{sum(p.numel() for p in model.parameters()):,} parameters", device,
             f", {job.world_size} processes" if job.enabled else "")
    log.info("CPU: %s", cpu.summary())
    metrics = MetricsFiles(out, METRICS, ("top1", "top5"), "validation accuracy")
    for epoch in range(start, config.epochs):
        sampler.set_epoch(epoch)
        data.train.set_epoch(epoch)
        torch.manual_seed(config.seed * 1_000_003 + epoch)  # dropout: the same draws after a resume
        try:
            stats = train_one_epoch(
                trained, train_loader, optimizer, scheduler, criterion, device, epoch=epoch, amp=amp,
                channels_last=channels_last, clip_grad=config.clip_grad, scaler=scaler,
                after_step=(lambda: ema.update_parameters(model)) if ema is not None else None,
                progress=progress, description=f"epoch {epoch + 1}/{config.epochs}",
                keep_eval=model.features if config.freeze_backbone else None)
        except NonFiniteLossError as e:
            kept = f"the last good checkpoint is {state_path}" if state_path.is_file() else "no checkpoint was written"
            raise TrainingError(f"{e}; stopping ({kept})") from None
        average_buffers(model, job)
        if job.is_main:
            result = evaluate_loader(ema.module if ema is not None else model, val_loader, device,
                                     len(data.classes), channels_last=channels_last, amp=amp, progress=progress)
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": stats.loss,
                   "val_loss": result.loss, "top1": result.top1, "top5": result.top5,
                   "images_per_second": stats.images_per_second * job.world_size, "seconds": stats.seconds}
            history.append(row)
            deployed = ema.module if ema is not None else model
            if result.top1 > best["top1"]:
                best = {"top1": result.top1, "epoch": epoch + 1}
                save(deployed, out / "best.safetensors", meta=_meta(config, data, history))
            save_training_state(state_path, TASK, {
                "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "history": history, "best": best,
                "train_config": config.to_dict(), "model_config": model.config, "meta": _meta(config, data, history),
                **({"model_ema": ema.module.state_dict(), "ema_averager": ema.state_dict()} if ema else {})})
            metrics.update(history)
            log.info("epoch %d/%d  train loss %.4f  val loss %.4f  top-1 %.4f  top-5 %.4f  %.0f images/s  %.0fs",
                     epoch + 1, config.epochs, stats.loss, result.loss, result.top1, result.top5,
                     row["images_per_second"], stats.seconds)
        job.barrier()
    summary = {"model": config.model, "width": config.width, "epochs": config.epochs,
               "best_top1": best["top1"], "best_epoch": best["epoch"],
               "final_top1": history[-1]["top1"] if history else None,
               "train_images": len(data.train), "val_images": len(data.val), "classes": data.classes,
               "skipped_files": len(data.skipped), "skipped": [f"{p}: {r}" for p, r in data.skipped],
               "seconds": round(sum(r["seconds"] for r in history), 1), "output": str(out),
               "cpu": cpu.summary()}  # results are reproducible on the same CPU and instruction set
    if job.is_main:
        metrics.finish(history)
        write_text(out / "summary.json", json.dumps(summary, indent=2))
        log.info("best top-1 %.4f at epoch %d; checkpoints in %s", best["top1"], best["epoch"], out)
    return TrainResult(summary, model, out)
