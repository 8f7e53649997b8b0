"""The evaluation report of the project's trained weights (`python -m workbench report`), and the
table that notebook 03 shows.

Every weights entry of the manifest is evaluated on the standard sets (fashion-pose val with its boxes as annotated
and grown to the keypoints, coco-sample with ground-truth and detector boxes; flip test unless --no-flip), with the
standard quarter-offset decoding that training validates with and with DARK, beside the round trip of each set with
ground-truth boxes (the ground truth rendered as heatmaps and decoded by the same pipeline: the ceiling its boxes
allow). Written atomically into reports/: evaluation.md, evaluation.csv, evaluation.png (AP per set and model) and
training_curves.png (validation AP and loss of every run, from the logs kept beside the weights).
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn
from tqdm import tqdm

from workbench.evaluation.sets import EvalSet, dataset_of, evaluate_on
from workbench.codec import DECODERS
from workbench.common.files import write_atomic, write_text_atomic
from workbench.common.paths import weights_dir
from workbench.speed.complexity import count_parameters
from workbench.training.logs import read_log
from workbench.zoo.cache import UNTRAINED_LABEL
from workbench.zoo.loader import UNTRAINED, load
from workbench.zoo.manifest import WeightsEntry

Size = tuple[int, int]
REPORT_SETS = ("fashion-pose-val-annotated", "fashion-pose-val", "coco-sample-gt", "coco-sample")
METRICS = ("AP", "AP50", "AP75", "APM", "APL", "AR")
ROUND_TRIP = "round trip (ground truth)"
BASELINE_SIZE = (256, 192)
"""The input size (H, W) of the baselines (round trip, untrained networks)."""
FEW_IMAGES = 20
"""A set of fewer images than this gets APs to read as an illustration, not a measurement (the report says so)."""


def _network(weights: str, model: str, device: str | torch.device) -> nn.Module | None:
    """The network of a table line: None for the round trip, a seeded random one for UNTRAINED, else the entry's."""
    if weights == ROUND_TRIP:
        return None
    return load(model, weights, device=device)


def _metric_cells(metrics: dict[str, Any]) -> dict[str, float | None]:
    return {name: None if metrics.get(name) is None else round(float(metrics[name]), 4) for name in METRICS}


def evaluation_table(entries: Sequence[WeightsEntry], sets: Sequence[EvalSet], decodings: Sequence[str] = DECODERS,
                     flip: bool = True, batch_size: int = 32, device: str | torch.device = "cpu",
                     progress: bool = True, untrained: Sequence[str] = (), round_trips: bool = True) -> pd.DataFrame:
    """One line per (weights entry, set, decoding) with the METRICS (fractions), then the labelled baselines at
    BASELINE_SIZE with standard decoding: per set, each model of `untrained` with random weights (weights column
    UNTRAINED_LABEL: the floor), and with `round_trips` the round trip of each set with ground-truth boxes (ROUND_TRIP:
    the ceiling those boxes allow; a set of detector boxes has no ground truth per box to render, so no ceiling).
    Column `images`: the number of images of the set (those of its annotation file)."""
    jobs = [(entry.name, entry.model, entry.input_size, eval_set, decode)
            for entry in entries for eval_set in sets for decode in decodings]
    jobs += [(UNTRAINED, name, BASELINE_SIZE, eval_set, "standard") for name in untrained for eval_set in sets]
    jobs += [(ROUND_TRIP, "-", BASELINE_SIZE, eval_set, "standard") for eval_set in sets
             if round_trips and eval_set.detections is None]
    images = {eval_set.name: len(dataset_of(eval_set, BASELINE_SIZE).images) for eval_set in sets}
    lines, network, loaded = [], None, None
    for weights, model, size, eval_set, decode in tqdm(jobs, desc="evaluating", unit="set", disable=not progress):
        if loaded != (weights, model):
            network, loaded = _network(weights, model, device), (weights, model)
        metrics = evaluate_on(network, eval_set, size, flip, batch_size, decode)
        label = UNTRAINED_LABEL if weights == UNTRAINED else weights
        lines.append({"set": eval_set.name, "boxes": eval_set.boxes, "images": images[eval_set.name],
                      "weights": label, "model": model, "input": f"{size[0]}x{size[1]}", "decode": decode,
                      "parameters": None if network is None else count_parameters(network), **_metric_cells(metrics)})
    return pd.DataFrame(lines, columns=["set", "boxes", "images", "weights", "model", "input", "decode", "parameters",
                                        *METRICS])


def evaluation_figure(table: pd.DataFrame, flip: bool) -> Figure:
    """Bars of AP per set (standard decoding), one colour per weights entry; the round trip of a set as a black
    line over its bars. `flip`: whether the table was measured with the flip test (the axis says so)."""
    import seaborn as sns

    trained = table[(table["weights"] != ROUND_TRIP) & (table["decode"] == "standard")]
    sets = list(dict.fromkeys(table["set"]))
    figure = Figure(figsize=(2.2 + 1.9 * len(sets), 4.0), layout="constrained")
    axes = figure.add_subplot()
    sns.barplot(data=trained, x="set", y="AP", hue="weights", order=sets, ax=axes, palette="colorblind")
    for container in axes.containers:
        axes.bar_label(container, fmt="%.3f", fontsize=6, rotation=90, padding=2)
    for position, name in enumerate(sets):
        ceiling = table[(table["set"] == name) & (table["weights"] == ROUND_TRIP)]["AP"]
        if len(ceiling):
            axes.hlines(float(ceiling.iloc[0]), position - 0.45, position + 0.45, colors="black", linewidth=1.5,
                        label=ROUND_TRIP if position == 0 else None)
    axes.set_ylim(0, 1.08)
    axes.set_ylabel(f"COCO keypoint AP ({'flip test' if flip else 'no flip test'}, standard decoding)")
    axes.set_xlabel("")
    axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3, frameon=False)
    axes.set_title("Trained weights on the sample sets (measured here)", fontsize=10)
    return figure


def training_curves_figure(entries: Sequence[WeightsEntry], directory: str | Path | None = None) -> Figure:
    """Validation AP (left) and training loss (right) per epoch of every entry whose run log is kept beside the
    weights (`run["log"]`)."""
    folder = Path(directory or weights_dir())
    figure = Figure(figsize=(11, 4), layout="constrained")
    ap_axes, loss_axes = figure.subplots(1, 2)
    for entry in entries:
        if not entry.run.get("log") or not (folder / entry.run["log"]).is_file():
            continue
        records = read_log(folder / entry.run["log"])
        validated = [r for r in records if r.get("AP") is not None]
        ap_axes.plot([r["epoch"] for r in validated], [r["AP"] for r in validated], marker="o", markersize=3,
                     label=entry.name)
        loss_axes.plot([r["epoch"] for r in records], [r["loss"] for r in records], label=entry.name)
    ap_axes.set(xlabel="epoch", ylabel="validation AP", title="validation AP (the run's own validation set)")
    loss_axes.set(xlabel="epoch", ylabel="heatmap loss", yscale="log", title="training loss")
    for axes in (ap_axes, loss_axes):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7)
    return figure


def _few_images(table: pd.DataFrame) -> str:
    """A sentence naming the sets of fewer than FEW_IMAGES images (column `images`), or nothing."""
    if "images" not in table.columns:
        return ""
    few = [f"{name} has {int(count)} images" for name, count in dict(zip(table["set"], table["images"])).items()
           if count < FEW_IMAGES]
    if not few:
        return ""
    return f" {'; '.join(few)}: read {'its' if len(few) == 1 else 'their'} APs as an illustration, not a measurement."


def markdown_report(table: pd.DataFrame, entries: Sequence[WeightsEntry], command: str, flip: bool) -> str:
    """The report as markdown: AP by set and weights, the full table, and each run's record in one line; `flip`:
    whether the table was measured with the flip test."""
    pivot = table.pivot_table(index=["weights", "decode"], columns="set", values="AP", sort=False).reset_index()
    pivot = pivot.astype(object).where(pivot.notna(), None)
    shown = table.assign(parameters=table["parameters"].map(lambda n: "-" if pd.isna(n) else f"{int(n):,}"))
    shown = shown.astype(object).where(shown.notna(), None)
    runs = [f"- `{e.name}` ({e.model}, {e.input_size[0]}x{e.input_size[1]}): {e.run.get('epochs', '?')} epochs, "
            f"{e.run.get('training_seconds', 0) / 3600:.1f} h of training (the sum of its epoch times, median epoch "
            f"{e.run.get('median_epoch_seconds', '?')} s), stored as {e.run.get('stored_as', '?')}; "
            f"curves `weights/{e.run.get('curves', '-')}`" + (f". {e.run['note']}" if e.run.get("note") else "")
            for e in entries]
    return "\n".join([
        "# Evaluation of the project's trained weights",
        "",
        f"Written by `{command}`. Every number here was measured by that command on this project's weights "
        f"(weights/manifest.json); COCO keypoint metrics {'with' if flip else 'without'} the flip test. The round "
        "trip renders the ground truth of each set with ground-truth boxes as target heatmaps and decodes it through "
        "the same pipeline: the best any network can score with those boxes. fashion-pose-val-annotated uses the val "
        "boxes as annotated (a few are drawn beside their person); fashion-pose-val grows them to enclose the "
        "labelled keypoints, as training and validation did. Decoding: standard is the quarter-pixel offset that "
        "training validates with; dark is DARK's Taylor refinement of the modulated heatmap (Zhang et al., CVPR "
        "2020)." + _few_images(table),
        "",
        "## AP by set",
        "",
        pivot.to_markdown(index=False, floatfmt=".3f", missingval="-"),
        "",
        "## All metrics",
        "",
        shown.to_markdown(index=False, floatfmt=".3f", missingval="-"),
        "",
        "## Runs",
        "",
        *runs,
        "",
        "![AP per set](evaluation.png)",
        "",
        "![training curves](training_curves.png)",
        "",
    ])


def write_evaluation_report(table: pd.DataFrame, entries: Sequence[WeightsEntry], directory: str | Path,
                            command: str, flip: bool) -> list[Path]:
    """Write evaluation.md, evaluation.csv, evaluation.png and training_curves.png into `directory`, each
    atomically; returns their paths. `flip`: whether `table` was measured with the flip test."""
    directory = Path(directory)
    csv = io.StringIO()
    table.to_csv(csv, index=False)
    paths = [write_text_atomic(directory / "evaluation.md", markdown_report(table, entries, command, flip)),
             write_text_atomic(directory / "evaluation.csv", csv.getvalue())]
    for name, figure in (("evaluation.png", evaluation_figure(table, flip)),
                         ("training_curves.png", training_curves_figure(entries))):
        paths.append(write_atomic(directory / name, lambda temporary, f=figure: f.savefig(temporary, dpi=120)))
    return paths
