"""The trainer: one function, `train(config, output)`, read top to bottom like torchvision's reference scripts.

Set-up (processes, data, network, optimiser, schedule, resumed state), then epochs of steps; at each epoch's end
validation when due, the log line, the curves and the checkpoints (`last.pt`, and `best.pt` when the validation AP
improves). Ctrl-C or SIGTERM ends the current step, saves `last.pt` mid-epoch and returns, whether it reaches
the one process, every rank under torchrun, or a whole process group with its loader workers (the workers ignore it:
`workbench.training.data.init_worker`). With a loss scaler (float16), a non-finite loss is a skipped step (warned,
counted in the log), and the run stops after `train.max_skipped_steps` in a row; without one, a non-finite loss
stops the run with the last good checkpoint left untouched. Under torchrun every process trains its share of each
batch (DistributedDataParallel) and rank 0 alone validates, logs and writes. The batch is per process: the start
prints the global batch (processes x train.batch_size), and warns when a COCO config runs with another global batch
than its published run (`published_batch`).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from model import build_model
from workbench.data.dataset import CocoKeypoints
from workbench.evaluation.metrics import evaluate_dataset
from workbench.common.errors import WorkbenchError
from workbench.common.files import write_text_atomic
from workbench.common.paths import REPO_ROOT
from workbench.training import distributed
from workbench.training.checkpointing import capture_rng, load_checkpoint, load_model_state, restore_rng, \
    save_checkpoint
from workbench.training.config import Config, changed_settings, config_names, dump, load_config, setting
from workbench.training.data import build_datasets, build_train_loader
from workbench.common.stop_signals import StopRequests
from workbench.training.logs import TensorBoard, append_record, plot_training, truncate_log
from workbench.training.loss import JointsMSELoss
from workbench.training.schedule import build_scheduler
from workbench.zoo.checkpoints import load_state_dict

LAST, BEST, LOG, CURVES = "last.pt", "best.pt", "log.jsonl", "training_curves.png"
PUBLISHED_PROCESSES = 8
"""The published COCO runs (the paper's, Lite-HRNet's official configs) trained on 8 GPUs, each with the shipped
config's train.batch_size: 8 x 64 = 512 at 256x192 (lr 2e-3 for the Lite family), 8 x 32 = 256 at 384x288."""


@dataclass(frozen=True)
class TrainingResult:
    """How a call to `train` ended in this process (`rank`; rank 0 validates): epochs completed, optimiser steps,
    the best validation AP (fraction) and its epoch (None if never validated), the signal that stopped it (None if
    it ran to the end), its checkpoint."""

    rank: int
    output: Path
    epochs_done: int
    step: int
    best_metric: float | None
    best_epoch: int | None
    stopped_by: str | None
    checkpoint: Path


@dataclass
class Position:
    """Where a run stands: the 0-based epoch in progress, batches of it done, optimiser steps in all; the epoch's
    running sums (loss x images, images, seconds); the best validation AP so far and its (1-based) epoch."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    epoch_loss: float = 0.0
    epoch_images: int = 0
    epoch_seconds: float = 0.0
    best_metric: float | None = None
    best_epoch: int | None = None
    epoch_skipped: int = 0
    skipped_in_row: int = 0


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `train.precision` on `device` (None: plain float32).

    `auto` is float16 (with a loss scaler) on CUDA and float32 on the CPU. Why float16 rather than bfloat16: it
    runs fast on every CUDA GPU with tensor cores (Volta, Turing and on), bfloat16 only from Ampere on, and it is
    what the official configs' fp16 runs used. bfloat16 keeps float32's range, so it needs no scaler and cannot
    overflow; on a GPU that supports it (torch.cuda.is_bf16_supported()) it is worth measuring with
    train.precision=bfloat16. On the CPU, bfloat16 autocast measured slower than float32 here (the fashion config).
    """
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    if precision == "float16" and device.type != "cuda":
        raise WorkbenchError("train.precision=float16 needs CUDA; on the CPU use bfloat16 or float32.")
    return {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}[precision]


def build_scaler(dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler | None:
    """A loss scaler for float16 autocast on `device` (None for other precisions)."""
    return torch.amp.GradScaler(device.type) if dtype == torch.float16 else None


def published_batch(config: Config) -> tuple[int, float] | None:
    """(global batch, lr) of the published run of `config`'s shipped COCO config (PUBLISHED_PROCESSES x its
    train.batch_size, its train.lr), or None when `config` is not a shipped COCO config."""
    name = config.get("name", "")
    if not name.endswith("_coco") or name not in config_names():
        return None
    shipped = load_config(name)["train"]
    return PUBLISHED_PROCESSES * shipped["batch_size"], shipped["lr"]


def batch_lines(config: Config, world_size: int) -> list[str]:
    """What the start of a run says about its batch: the global batch, and a warning when a COCO config runs with
    another global batch than its published run (with the lr the linear scaling rule would give)."""
    settings = config["train"]
    global_batch = world_size * settings["batch_size"]
    lines = [f"global batch: {world_size} process(es) x train.batch_size {settings['batch_size']} = {global_batch}, "
             f"lr {settings['lr']:g}"]
    published = published_batch(config)
    if published is not None and published[0] != global_batch:
        batch, lr = published
        lines.append(f"warning: the published {config['name']} run used a global batch of {batch} "
                     f"({PUBLISHED_PROCESSES} GPUs x {batch // PUBLISHED_PROCESSES}) with lr {lr:g}; this run's is "
                     f"{global_batch}. Its AP may differ from the published one: keep the global batch, or scale the "
                     f"lr with it (linear rule: train.lr={lr * global_batch / batch:.3g}) and check the warm-up.")
    return lines


def shown(path: str | Path) -> str:
    """`path` for printing: relative to the repository when inside it (no machine's absolute path in logs and
    notebooks), else as given."""
    try:
        return Path(path).resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def forward_backward(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                     criterion: nn.Module, dtype: torch.dtype | None = None,
                     scaler: torch.amp.GradScaler | None = None) -> torch.Tensor:
    """Loss of images (N, 3, H, W) against targets (N, 17, H/4, W/4) and weights (N, 17), gradients accumulated
    into the parameters; the network runs under autocast to `dtype` if given, the loss in float32."""
    with torch.autocast(images.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        heatmaps = model(images)
    loss = criterion(heatmaps.float(), targets, weights)
    (scaler.scale(loss) if scaler is not None else loss).backward()
    return loss.detach()


def train_step(model: nn.Module, batch: dict[str, Any], criterion: nn.Module, optimizer: torch.optim.Optimizer,
               device: torch.device, dtype: torch.dtype | None = None, scaler: torch.amp.GradScaler | None = None,
               channels_last: bool = False) -> torch.Tensor:
    """One optimiser step on a batch of `collate_training`; returns the loss (a 0-d tensor on `device`)."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    images = batch["image"].to(device, non_blocking=True, memory_format=layout)
    targets = batch["target"].to(device, non_blocking=True)
    weights = batch["target_weight"].to(device, non_blocking=True)
    optimizer.zero_grad(set_to_none=True)
    loss = forward_backward(model, images, targets, weights, criterion, dtype, scaler)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return loss


def validate(model: nn.Module, dataset: CocoKeypoints, config: Config, progress: bool) -> dict[str, Any]:
    """COCO keypoint metrics of `model` on the validation set (ground-truth boxes, or the person boxes of
    validation.detections; flip test as configured), over the images `workbench.evaluation.metrics.dataset_metrics`
    counts."""

    model.eval()
    settings = config["validation"]
    metrics = evaluate_dataset(model, dataset, flip=settings["flip"], batch_size=settings["batch_size"],
                               workers=config["data"]["workers"], progress=progress)
    model.train()
    return metrics


def build_network(config: Config, load_backbone: bool) -> nn.Module:
    """The config's network; SimpleBaselines get `model.backbone_weights` (a torchvision ImageNet state dict file)
    when `load_backbone`."""
    options = dict(config["model"]["options"])
    if load_backbone and config["model"]["backbone_weights"]:
        options["backbone_weights"] = load_state_dict(Path(config["model"]["backbone_weights"]).expanduser())
    try:
        return build_model(config["model"]["name"], tuple(config["model"]["input_size"]), **options)
    except ValueError as error:
        raise WorkbenchError(f"cannot build {config['model']['name']}: {error}. Fix model.options.") from None


OPTIMIZER = torch.optim.Adam
"""The optimiser of every run: Adam, as the paper (section 4.2) and the official configs train, set by train.lr and
train.weight_decay. Run records name it from here (`workbench.training.publishing.run_record`)."""


def build_optimizer(model: nn.Module, train: dict[str, Any]) -> torch.optim.Optimizer:
    """OPTIMIZER over `model`'s parameters with the learning rate and weight decay of the `train` settings."""
    return OPTIMIZER(model.parameters(), lr=train["lr"], weight_decay=train["weight_decay"])


def train(config: Config, output: str | Path, resume: str | Path | None = None) -> TrainingResult:
    """Train as `config` says, writing into `output`; with `resume`, continue the run saved in that checkpoint.

    Returns when the epochs are done or a stop signal was handled. Raises WorkbenchError for settings, files or
    checkpoints that cannot work, and for a loss that stops being finite. `train.threads` holds only for the call.
    """
    processes = distributed.setup(config["train"]["device"])
    threads, benchmark = torch.get_num_threads(), torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = setting(config, "train.cudnn_benchmark")
        return _train(config, Path(output), None if resume is None else Path(resume), processes)
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = benchmark
        distributed.teardown(processes)


def _train(config: Config, output: Path, resume: Path | None, processes: distributed.Processes) -> TrainingResult:
    settings, main, device = config["train"], processes.main, processes.device
    say = tqdm.write if main else (lambda text: None)
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    state = load_checkpoint(resume, config) if resume else None
    if state is None and (output / LAST).exists():
        raise WorkbenchError(f"{output} already holds a run ({LAST}). Continue it with --resume, or pass another "
                             "--output.")
    if state is not None:
        for line in changed_settings(state["config"], config):
            say(f"resuming with a changed setting: {line}")

    torch.manual_seed(settings["seed"])
    np.random.seed(settings["seed"])
    random.seed(settings["seed"])
    train_set, val_set = build_datasets(config, main)
    say(f"training set: {train_set.summary()}")
    if val_set is not None:
        say(f"validation set: {val_set.summary()}")
    for line in batch_lines(config, processes.world_size):
        say(line)

    model = build_network(config, load_backbone=state is None)
    dtype = autocast_dtype(settings["precision"], device)
    if settings["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    if settings["sync_bn"] and processes.distributed:
        if device.type != "cuda":
            raise WorkbenchError("train.sync_bn needs CUDA (SyncBatchNorm); set train.sync_bn=false on the CPU.")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    network = model
    if processes.distributed:
        network = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                      else None)
    optimizer = build_optimizer(model, settings)
    loader = build_train_loader(train_set, settings["batch_size"], config["data"]["workers"],
                                num_replicas=processes.world_size, rank=processes.rank, seed=settings["seed"],
                                pin_memory=device.type == "cuda")
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise WorkbenchError(f"the training set has {len(train_set)} instances: not one batch of "
                             f"{settings['batch_size']} for each of {processes.world_size} processes. Lower "
                             "train.batch_size or use more data.")
    scheduler = build_scheduler(optimizer, settings, steps_per_epoch)
    scaler = build_scaler(dtype, device)

    position = Position()
    if state is not None:
        _check_same_batches(state, settings["batch_size"], processes.world_size, resume)
        load_model_state(model, state["model"], resume)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        position = Position(**{field.name: state.get(field.name, field.default) for field in fields(Position)})
        restore_rng(state["rng"])
        if position.epoch < settings["epochs"]:
            say(f"resumed from {shown(resume)}: epoch {position.epoch + 1}, batch {position.batch} of "
                f"{steps_per_epoch}, "
                f"step {position.step}")
        else:
            say(f"{shown(resume)} has finished its {position.epoch} epochs: raise train.epochs to train on.")

    def snapshot() -> dict[str, Any]:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                **asdict(position), "batch_size": settings["batch_size"], "world_size": processes.world_size,
                "rng": capture_rng(), "config": config}

    board = TensorBoard(output / "tensorboard", main and config["output"]["tensorboard"])
    if main:
        output.mkdir(parents=True, exist_ok=True)
        write_text_atomic(output / "config.yaml", dump(config))
        truncate_log(output / LOG, position.epoch)
    progress = main and config["output"]["progress"]
    stopped_by = None
    try:
        with StopRequests() as stop:
            while position.epoch < settings["epochs"] and stopped_by is None:
                loader.sampler.set_epoch(position.epoch, position.batch * settings["batch_size"])
                network.train()
                stopped_by = _train_epoch(network, loader, optimizer, scheduler, scaler, dtype, config, processes,
                                          position, stop, board, progress, output)
                if stopped_by is not None:
                    if main:
                        save_checkpoint(snapshot(), output / LAST)
                    break
                record = _end_epoch(position, scheduler, model, val_set, config, processes, progress)
                if main:
                    append_record(output / LOG, record)
                    board.scalars({"epoch/loss": record["loss"], "epoch/AP": record.get("AP")}, position.epoch)
                    plot_training(output / LOG, output / CURVES, config["name"])
                    checkpoint = snapshot()
                    save_checkpoint(checkpoint, output / LAST)
                    if position.best_epoch == position.epoch:
                        save_checkpoint(checkpoint, output / BEST)
                if _any_stop(stop, processes) and position.epoch < settings["epochs"]:
                    stopped_by = stop.signal_name or "a stop signal on another process"
    finally:
        board.close()
    distributed.barrier(processes)
    if stopped_by is not None:
        say(f"stopped by {stopped_by} at epoch {position.epoch + 1}, batch {position.batch}: saved "
            f"{shown(output / LAST)}; "
            "continue with --resume.")
    return TrainingResult(processes.rank, output, position.epoch, position.step, position.best_metric,
                          position.best_epoch, stopped_by, output / LAST)


def _train_epoch(network: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LambdaLR, scaler: torch.amp.GradScaler | None,
                 dtype: torch.dtype | None, config: Config, processes: distributed.Processes, position: Position,
                 stop: StopRequests, board: TensorBoard, progress: bool, output: Path) -> str | None:
    """Train through the rest of the epoch, advancing `position`; returns what stopped it early, if anything."""
    settings, criterion = config["train"], JointsMSELoss()
    bar = tqdm(total=len(loader) + position.batch, initial=position.batch, unit="batch", dynamic_ncols=True,
               desc=f"epoch {position.epoch + 1}/{settings['epochs']}", disable=not progress)
    started, seconds_before = time.perf_counter(), position.epoch_seconds
    try:
        for batch in loader:
            for message in batch["errors"]:
                tqdm.write(f"warning: {message}")
            lr = optimizer.param_groups[0]["lr"]
            buffers = _floating_buffers(network) if scaler is not None else None
            loss = train_step(network, batch, criterion, optimizer, processes.device, dtype, scaler,
                              settings["channels_last"])
            scheduler.step()
            images = len(batch["image"])
            total_loss, total_images, stops = distributed.agree(
                torch.tensor([loss.item() * images, images, stop.signal_name is not None], dtype=torch.float64),
                processes).tolist()
            if not math.isfinite(total_loss):
                if scaler is None:
                    raise WorkbenchError(_non_finite_message(total_loss, position, lr, output))
                # the scaler found non-finite gradients and skipped the optimiser step (and lowered its scale);
                # the forward pass may have put non-finite values into BatchNorm's running statistics: restore them
                _restore_buffers(network, buffers)
                position.epoch_skipped += 1
                position.skipped_in_row += 1
                if processes.main:
                    tqdm.write(f"warning: the loss became {total_loss} at epoch {position.epoch + 1}, step "
                               f"{position.step + 1}: step skipped ({position.skipped_in_row} in a row, at most "
                               f"{setting(config, 'train.max_skipped_steps')}; loss scale now {scaler.get_scale():g})")
                if position.skipped_in_row > setting(config, "train.max_skipped_steps"):
                    raise WorkbenchError(_non_finite_message(total_loss, position, lr, output, in_row=True))
            else:
                position.skipped_in_row = 0
                position.epoch_loss += total_loss
                position.epoch_images += int(total_images)
            position.step, position.batch = position.step + 1, position.batch + 1
            position.epoch_seconds = seconds_before + time.perf_counter() - started
            if position.epoch_images:
                bar.set_postfix(loss=f"{position.epoch_loss / position.epoch_images:.3e}", lr=f"{lr:.2e}",
                                img_s=f"{position.epoch_images / position.epoch_seconds:.1f}", refresh=False)
            bar.update()
            if position.step % config["output"]["log_every"] == 0 and math.isfinite(total_loss):
                board.scalars({"train/loss": total_loss / total_images, "train/lr": lr}, position.step)
            if stops:
                return stop.signal_name or "a stop signal on another process"
    finally:
        bar.close()
    return None


def _end_epoch(position: Position, scheduler: torch.optim.lr_scheduler.LambdaLR, model: nn.Module,
               val_set: CocoKeypoints | None, config: Config, processes: distributed.Processes,
               progress: bool) -> dict[str, Any]:
    """Close the epoch in `position`, validate if due (rank 0), and return the epoch's log record."""
    position.epoch, position.batch = position.epoch + 1, 0
    images = max(position.epoch_images, 1)
    record = {"epoch": position.epoch, "step": position.step, "lr": last_step_lr(scheduler, position.step),
              "loss": position.epoch_loss / images if position.epoch_images else math.nan,
              "images": position.epoch_images,
              "images_per_second": position.epoch_images / position.epoch_seconds, "seconds": position.epoch_seconds,
              "hardware": processes.hardware(), "skipped_steps": position.epoch_skipped}
    position.epoch_loss, position.epoch_images, position.epoch_seconds = 0.0, 0, 0.0
    position.epoch_skipped = 0
    every = config["validation"]["every"]
    if every and (position.epoch % every == 0 or position.epoch == config["train"]["epochs"]):
        if processes.main and val_set is not None:
            record["boxes"] = (f"detections ({Path(config['validation']['detections']).name})"
                               if setting(config, "validation.detections") else "ground truth")
            metrics = validate(model, val_set, config, progress)
            record.update({key: value for key, value in metrics.items() if key != "per_joint"})
            if position.best_metric is None or metrics["AP"] > position.best_metric:
                position.best_metric, position.best_epoch = metrics["AP"], position.epoch
            tqdm.write(f"epoch {position.epoch}: validation AP {100 * metrics['AP']:.1f}, {record['boxes']} boxes "
                       f"(best "
                       f"{100 * position.best_metric:.1f} at epoch {position.best_epoch})")
        distributed.barrier(processes)
    return record


def _floating_buffers(network: nn.Module) -> list[torch.Tensor]:
    """Copies of a network's floating-point buffers (BatchNorm's running statistics), in `buffers()` order."""
    return [buffer.detach().clone() for buffer in network.buffers() if buffer.is_floating_point()]


def _restore_buffers(network: nn.Module, saved: list[torch.Tensor] | None) -> None:
    """Put back the buffers `_floating_buffers` copied (after a skipped step)."""
    if saved:
        with torch.no_grad():
            for buffer, copy in zip((b for b in network.buffers() if b.is_floating_point()), saved):
                buffer.copy_(copy)


def _any_stop(stop: StopRequests, processes: distributed.Processes) -> bool:
    """Whether any process has received a stop signal."""
    return bool(distributed.agree(torch.tensor([stop.signal_name is not None], dtype=torch.float64),
                                  processes).item())


def last_step_lr(scheduler: torch.optim.lr_scheduler.LambdaLR, step: int) -> float:
    """The learning rate (of the first parameter group) that optimiser step `step` (1-based) used."""
    return scheduler.base_lrs[0] * scheduler.lr_lambdas[0](step - 1)


def _check_same_batches(state: dict[str, Any], batch_size: int, world_size: int, path: Path) -> None:
    """Refuse a resume whose batches would differ from the saved run's (the schedule counts steps)."""
    saved = (state["batch_size"], state["world_size"])
    if saved[0] * saved[1] != batch_size * world_size or (state["batch"] and saved[1] != world_size):
        raise WorkbenchError(f"{path} was trained with {saved[1]} process(es) x batch {saved[0]}; this run has "
                             f"{world_size} x {batch_size}. Resume with the same processes and train.batch_size "
                             "(the schedule and the position in the epoch depend on them).")


def _non_finite_message(total_loss: float, position: Position, lr: float, output: Path, in_row: bool = False) -> str:
    kept = (f"the last good checkpoint, {shown(output / LAST)}, is kept" if (output / LAST).exists()
            else "no checkpoint was written yet")
    if in_row:
        return (f"the training loss was not finite for {position.skipped_in_row} steps in a row (the last {total_loss} "
                f"at epoch {position.epoch + 1}, step {position.step + 1}, lr {lr:.3g}), more than "
                f"train.max_skipped_steps: training stopped and {kept}. Lower train.lr, try "
                "train.precision=bfloat16 or float32, or check the data, then continue with --resume.")
    return (f"the training loss became {total_loss} at epoch {position.epoch + 1}, step {position.step + 1} (lr "
            f"{lr:.3g}): training stopped and {kept}. Lower train.lr or check the data, then continue with --resume "
            "(or start afresh).")
