"""Turning a finished training run into one of the project's weights: evaluate, store compactly, record.

`publish_run` reads a run folder written by `python -m workbench train` (config.yaml, last.pt, log.jsonl,
training_curves.png), refuses a run that has not finished its schedule, evaluates the final weights on the run's
validation set in float32 and again after a float16 round trip, and stores them with `workbench.zoo.manifest.save_weights`
(float16 when the AP moves by no more than the tolerance, float32 otherwise) together with the record of the run.
The run's log and curves are copied beside the weights as `<name>.log.jsonl` and `<name>.training_curves.png`.
"""
from __future__ import annotations

import json
import shlex
import shutil
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from torch import nn

from workbench.common.errors import WorkbenchError
from workbench.common.files import write_atomic
from workbench.common.paths import weights_dir
from workbench.training.checkpointing import load_checkpoint
from workbench.training.config import config_names, flatten, load_config
from workbench.training.data import build_datasets
from workbench.training.logs import read_log
from workbench.training.loop import CURVES, LAST, LOG, OPTIMIZER, build_network, validate
from workbench.zoo.manifest import WeightsEntry, save_weights

PRETRAINED_IN_PUBLISHED_RUNS = {
    "mobilenetv2": "The published MobileNetV2 run (Table 2) starts from ImageNet weights; none are available here, "
                   "so this run starts from scratch like the Lite models.",
    "shufflenetv2": "The published ShuffleNetV2 run (Table 2) starts from ImageNet weights; none are available here, "
                    "so this run starts from scratch like the Lite models.",
}


def _half_round_trip(network: nn.Module) -> nn.Module:
    """`network` with every floating-point tensor of its state rounded to float16 and back (what loading an fp16
    weights file gives)."""
    state = {k: v.half().float() if v.is_floating_point() else v for k, v in network.state_dict().items()}
    network.load_state_dict(state)
    return network


def training_command(config: dict[str, Any]) -> str:
    """The train command that reproduces `config`: its named config plus a --set for every setting that differs
    from the shipped one (data.root excepted: it names this machine's data folder)."""
    command = f"python -m workbench train --config {config['name']}"
    if config["name"] not in config_names():
        return command
    shipped, used = flatten(load_config(config["name"])), flatten(config)
    changed = [shlex.quote(f"{name}={value if isinstance(value, str) else json.dumps(value, separators=(',', ':'))}")
               for name in sorted(shipped.keys() | used.keys())
               if name != "data.root" and shipped.get(name) != (value := used.get(name))]
    return command + (" --set " + " ".join(changed) if changed else "")


def run_record(config: dict[str, Any], log: list[dict[str, Any]], checkpoint: str) -> dict[str, Any]:
    """The manifest's description of a run: its config, data and split, schedule, augmentation, seed, epochs,
    and its time (the sum of the logged epoch times, validation not included, and their median), and the hardware
    that trained it: {description: epochs} from the log (runs logged before epochs recorded it: "not recorded")."""
    data, train = config["data"], config["train"]
    seconds = [record["seconds"] for record in log]
    record = {
        "config_name": config["name"],
        "command": training_command(config),
        "data": {"train": data["train_annotations"], "val": data["val_annotations"], "images": data["train_images"],
                 "boxes": "ground truth, grown to enclose the labelled keypoints" if data["enclose_keypoints"]
                 else "ground truth",
                 **({"validation_boxes": f"detections ({Path(config['validation']['detections']).name})"}
                    if config["validation"].get("detections") else {})},
        "epochs": len(log),
        "steps": log[-1]["step"],
        "checkpoint": checkpoint,
        "initialisation": "from scratch" if not config["model"]["backbone_weights"] else
        f"backbone from {Path(config['model']['backbone_weights']).name}",
        "schedule": {"optimizer": OPTIMIZER.__name__, "lr": train["lr"], "weight_decay": train["weight_decay"],
                     "batch_size": train["batch_size"], "warmup_iters": train["warmup_iters"],
                     "milestones": train["milestones"], "gamma": train["gamma"]},
        "augmentation": dict(data["augmentation"]),
        "seed": train["seed"],
        "precision": train["precision"],
        "threads": train["threads"],
        "training_seconds": round(sum(seconds)),
        "median_epoch_seconds": round(statistics.median(seconds), 1),
        "hardware": dict(Counter(record.get("hardware", "not recorded") for record in log)),
        "config": config,
    }
    if config["model"]["name"] in PRETRAINED_IN_PUBLISHED_RUNS:
        record["note"] = PRETRAINED_IN_PUBLISHED_RUNS[config["model"]["name"]]
    return record


def publish_run(run_dir: str | Path, name: str | None = None, checkpoint: str = "last.pt", tolerance: float = 1e-3,
                directory: str | Path | None = None, progress: bool = True) -> tuple[WeightsEntry, dict[str, float]]:
    """Store the weights of `checkpoint` (last.pt, or e.g. best.pt) of the finished run in `run_dir` (its last.pt
    has done every epoch) as manifest entry `name` (default: the run's config name) in `directory` (default:
    weights/).

    Returns the entry and the validation APs: {"float32": AP, "float16": AP}. float16 is stored when the two
    differ by at most `tolerance`.
    """
    run_dir = Path(run_dir)
    last = load_checkpoint(run_dir / LAST)
    epochs = last["config"]["train"]["epochs"]
    if last["epoch"] < epochs:
        raise WorkbenchError(f"{run_dir} has done {last['epoch']} of its {epochs} epochs: finish it with "
                             f"`python -m workbench train --output {run_dir} --resume`, then publish.")
    state = last if checkpoint == LAST else load_checkpoint(run_dir / checkpoint)
    config = state["config"]
    log = read_log(run_dir / LOG)
    network = build_network(config, load_backbone=False)
    network.load_state_dict(state["model"])
    _, val_set = build_datasets({**config, "validation": {**config["validation"], "every": 1, "subset": None}})
    ap = {"float32": validate(network, val_set, config, progress)["AP"]}
    metrics = validate(_half_round_trip(network), val_set, config, progress)
    ap["float16"] = metrics["AP"]
    half = abs(ap["float16"] - ap["float32"]) <= tolerance
    if not half:
        network.load_state_dict(state["model"])
        metrics = validate(network, val_set, config, progress)
    name = name or config["name"]
    folder = Path(directory or weights_dir())
    record = {**run_record(config, log, checkpoint), "stored_as": "float16" if half else "float32",
              "val_AP_float32": ap["float32"], "val_AP_float16": ap["float16"],
              "log": f"{name}.log.jsonl", "curves": f"{name}.training_curves.png"}
    folder.mkdir(parents=True, exist_ok=True)
    for source, target in ((LOG, record["log"]), (CURVES, record["curves"])):
        write_atomic(folder / target, lambda temporary, source=source: shutil.copyfile(run_dir / source, temporary))
    val_metrics = {f"val_{key}": value for key, value in metrics.items() if isinstance(value, (int, float))}
    entry = save_weights(network.eval(), name, run=record, metrics=val_metrics, half=half, directory=folder)
    return entry, ap
