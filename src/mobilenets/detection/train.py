"""`mobilenets.detection.train`: a CenterNet run from a config to an output folder of checkpoints, metrics, plots."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import DataLoader, DistributedSampler

from .. import cpu
from .._atomic import write_text
from ..classification.distributed import choose_device
from ..classification.engine import NonFiniteLossError, train_one_epoch
from ..runs import (
    MetricsFiles,
    ResumeError,
    make_optimizer,
    make_scheduler,
    restore_run,
    save_training_state,
    start_logging,
)
from ..weights.io import save
from .checkpoint import TASK, pretrained_detector
from .config import DetectConfig, make_detect_config
from .data import DetectionData, build_detection_data
from .engine import CenterNetCriterion, evaluate_detector
from .model import CenterNet, create_detector
from .transforms import collate

log = logging.getLogger("mobilenets.detect")
METRICS = ("epoch", "lr", "train_loss", "val_loss", "map", "map50", "map75", "map_small", "map_medium",
           "map_large", "images_seen", "images_per_second", "seconds")
RESUMABLE_CHANGES = {"resume", "workers", "output", "device"}


class DetectTrainingError(RuntimeError):
    """A run that cannot go on (the loss diverged, an overfit check failed); the message says what was kept."""


@dataclass
class DetectResult:
    """What a run produced: its summary (as in summary.json), the trained model, and the output folder."""

    summary: dict[str, Any]
    model: CenterNet
    output: Path


def train_detector(config: DetectConfig | None = None, *, recipe: str | Path | None = None, progress: bool = True,
                   **options: Any) -> DetectResult:
    """Train a CenterNet; return its summary (also `<output>/summary.json`) and the model.

    Give a DetectConfig, or a YAML `recipe` and/or options by name (`backbone=`, `epochs=`, `data=`, ...).
    """
    config = config or make_detect_config(recipe, **options)
    out = Path(config.output)
    handler = start_logging(log, out, True)
    try:
        return _train(config, choose_device(config.device), out, progress)
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()


def _build_model(config: DetectConfig, num_classes: int) -> CenterNet:
    options = {"backbone": config.backbone, "width_mult": config.width, "num_classes": num_classes,
               "neck_channels": config.neck_channels, "head_channels": config.head_channels,
               "head_conv": config.head_conv}
    if config.pretrained is None:
        return create_detector("centernet", **options)
    model, description = pretrained_detector(config.pretrained, **options)
    log.info("%s", description)
    return model


def _loaders(config: DetectConfig, data: DetectionData, device: torch.device
             ) -> tuple[DistributedSampler, DataLoader, DataLoader]:
    """Training batches in an order fixed by (seed, epoch), so a resumed run sees what an uninterrupted one saw."""
    workers = config.workers if config.workers is not None else (0 if config.data is None and
                                                                 config.train_json is None else 2)
    common = {"num_workers": workers, "pin_memory": device.type == "cuda", "collate_fn": collate}
    batch = min(config.batch_size, len(data.train))
    sampler = DistributedSampler(data.train, num_replicas=1, rank=0, shuffle=True, seed=config.seed, drop_last=True)
    train = DataLoader(data.train, batch_size=batch, sampler=sampler, drop_last=True, **common)
    val = DataLoader(data.val, batch_size=max(batch, 32), shuffle=False, **common)
    return sampler, train, val


def _meta(config: DetectConfig, data: DetectionData, history: list[dict[str, float]]) -> dict[str, Any]:
    """What eval and predict need beside the weights: class names, category ids, input size, last metrics."""
    return {"classes": data.classes, "category_ids": data.category_ids, "image_size": config.image_size,
            "metrics": history[-1] if history else {}, "train_config": config.to_dict()}


def _train(config: DetectConfig, device: torch.device, out: Path, progress: bool) -> DetectResult:
    torch.manual_seed(config.seed)
    data = build_detection_data(config)
    log.info("data: %s", data.description)
    for path, reason in data.skipped:
        log.warning("skipped %s: %s", path, reason)
    model = _build_model(config, len(data.classes)).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    sampler, train_loader, val_loader = _loaders(config, data, device)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, len(train_loader))
    state_path = out / "last.pt"
    start, history, best = 0, [], {"map": -1.0, "map50": -1.0, "epoch": 0}
    if config.resume and state_path.is_file():
        try:
            state = restore_run(state_path, TASK, config, RESUMABLE_CHANGES, model, optimizer, scheduler)
        except ResumeError as e:
            raise DetectTrainingError(str(e)) from None
        start, history, best = state["epoch"], list(state["history"]), dict(state["best"])
        log.info("resuming %s after epoch %d of %d", state_path, start, config.epochs)
    elif config.resume:
        log.info("nothing to resume in %s: starting from scratch", out)
    write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    criterion = CenterNetCriterion(len(data.classes), model.stride)
    log.info("model: CenterNet on %s α=%g, %d classes, %s parameters, %dx%d input, on %s", config.backbone,
             config.width, len(data.classes), f"{sum(p.numel() for p in model.parameters()):,}",
             config.image_size, config.image_size, device)
    log.info("CPU: %s", cpu.summary())
    metrics = MetricsFiles(out, METRICS, ("map50", "map"), "validation AP")
    for epoch in range(start, config.epochs):
        sampler.set_epoch(epoch)
        data.train.set_epoch(epoch)
        try:
            stats = train_one_epoch(model, train_loader, optimizer, scheduler, criterion, device, epoch=epoch,
                                    channels_last=config.channels_last, clip_grad=config.clip_grad,
                                    progress=progress, description=f"epoch {epoch + 1}/{config.epochs}")
        except NonFiniteLossError as e:
            kept = f"the last good checkpoint is {state_path}" if state_path.is_file() else "no checkpoint was written"
            raise DetectTrainingError(f"{e}; stopping ({kept})") from None
        result = evaluate_detector(model, val_loader, device, data.val_coco, data.category_ids,
                                   max_detections=config.max_detections, channels_last=config.channels_last,
                                   progress=progress)
        seen = (history[-1]["images_seen"] if history else 0) + stats.images
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": stats.loss,
               "val_loss": result.loss, **{k: result.metrics[k] for k in METRICS if k in result.metrics},
               "images_seen": seen, "images_per_second": stats.images_per_second, "seconds": stats.seconds}
        history.append(row)
        if result.metrics["map"] > best["map"]:
            best = {"map": result.metrics["map"], "map50": result.metrics["map50"], "epoch": epoch + 1}
            save(model, out / "best.safetensors", meta=_meta(config, data, history))
        save_training_state(state_path, TASK, {
            "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "history": history, "best": best,
            "train_config": config.to_dict(), "model_config": model.config, "meta": _meta(config, data, history)})
        metrics.update(history)
        log.info("epoch %d/%d  train loss %.4f  val loss %.4f  AP %.4f  AP50 %.4f  %.0f images/s  %.0fs",
                 epoch + 1, config.epochs, stats.loss, result.loss, result.metrics["map"], result.metrics["map50"],
                 stats.images_per_second, stats.seconds)
        if config.overfit and _overfitted(history):
            break
    metrics.finish(history)
    summary = _summary(config, data, history, best, out)
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    log.info("best AP %.4f (AP50 %.4f) at epoch %d; checkpoints in %s", best["map"], best["map50"], best["epoch"],
             out)
    if config.overfit:
        _check_overfit(history)
    return DetectResult(summary, model, out)


def _summary(config: DetectConfig, data: DetectionData, history: list[dict[str, float]], best: dict[str, float],
             out: Path) -> dict[str, Any]:
    return {"backbone": config.backbone, "width": config.width, "image_size": config.image_size,
            "epochs": config.epochs, "map": best["map"], "map50": best["map50"], "best_epoch": best["epoch"],
            "final": {k: history[-1][k] for k in ("map", "map50", "map75")} if history else None,
            "classes": data.classes, "train_images": len(data.train), "val_images": len(data.val),
            "skipped_files": len(data.skipped), "seconds": round(sum(r["seconds"] for r in history), 1),
            "output": str(out), "cpu": cpu.summary()}


def _overfitted(history: list[dict[str, float]]) -> bool:
    """The overfit check's goal: the training loss fell tenfold and AP50 on the same images reached 1.0."""
    return history[-1]["train_loss"] <= history[0]["train_loss"] / 10 and history[-1]["map50"] >= 1.0


def _check_overfit(history: list[dict[str, float]]) -> None:
    """Fail the run, naming what was missed, unless the overfit check's goal was reached."""
    first, last, best50 = history[0]["train_loss"], history[-1]["train_loss"], history[-1]["map50"]
    if not _overfitted(history):
        raise DetectTrainingError(f"overfit check failed: loss {first:.4f} -> {last:.4f} (needs a tenfold fall), "
                                  f"AP50 {best50:.4f} (needs 1.0); the targets, loss or decoding may be broken")
    log.info("overfit check passed: loss %.4f -> %.4f, AP50 %.4f", first, last, best50)
