"""What the reproduction notebooks compute, as functions a test can call: the rows of the paper's Tables 2 and 3
measured beside the printed figures (complexity and AP, on the sets of `workbench.evaluation.sets`), and training
in chunks that show the curves as they grow.

Tables are pandas DataFrames with readable column names; every measured column says "measured" (or names the
counter), every printed one "printed".
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.speed.complexity import QUICK_SPEED, ComplexityRow, SpeedSettings, measure_rows
from workbench.reports.complexity import csv_record
from workbench.common.errors import WorkbenchError
from workbench.reports.evaluation import METRICS, ROUND_TRIP
from workbench.zoo.cache import UNTRAINED_LABEL
from workbench.evaluation.sets import EvalSet
from workbench.common.paths import REPO_ROOT
from workbench.speed.published import G, published_row, published_rows
from workbench.training import TrainingResult, build_config, config_names, load_config, read_log, train
from workbench.training.loop import BEST, CURVES, LAST, LOG, shown
from workbench.zoo.manifest import WeightsEntry

Size = tuple[int, int]
SPEED_MODES = ("none", "quick", "full")


# Complexity columns of Tables 2 and 3

def table_rows(models: Sequence[str] | None = None,
               sizes: Sequence[Sequence[int]] | None = None) -> list[tuple[str, Size]]:
    """(model, (H, W)) of every published row the model zoo builds, in the order of `published_figures.yaml`;
    only `models` and `sizes` when given."""
    wanted_sizes = None if sizes is None else {tuple(int(v) for v in size) for size in sizes}
    return [(row.model, row.input_size) for row in published_rows() if row.in_zoo
            and (models is None or row.model in models) and (wanted_sizes is None or row.input_size in wanted_sizes)]


def speed_settings(mode: str, threads: int) -> SpeedSettings | None:
    """How latency is measured: "none" (counts only), "quick" (`QUICK_SPEED`: 3 rounds, throughput at batch 1) or
    "full" (`SpeedSettings` defaults: 30 rounds, throughput at batch 32), on `threads` CPU threads."""
    if mode not in SPEED_MODES:
        raise WorkbenchError(f"unknown speed mode {mode!r}; choose one of {', '.join(SPEED_MODES)}.")
    if mode == "none":
        return None
    return dataclasses.replace(QUICK_SPEED if mode == "quick" else SpeedSettings(), threads=threads)


def measure_table_rows(rows: Sequence[tuple[str, Size]], settings: SpeedSettings | None
                       ) -> tuple[list[ComplexityRow], list[str]]:
    """Count (and, with `settings`, time) each (model, (H, W)) of `rows`; returns the rows and the notes of
    `measure_rows` (each note once)."""
    measured, notes = [], []
    for name, size in rows:
        found, found_notes = measure_rows([name], [tuple(size)], settings, show_progress=False)
        measured += found
        notes += found_notes
    return measured, list(dict.fromkeys(notes))


def _tables(model: str, size: Size) -> str:
    published = published_row(model, size)
    tables = [source[-1] for source in ("seed_table2", "seed_table3") if published and published.paper_row(source)]
    return ", ".join(tables) or "-"


def complexity_frame(rows: Sequence[ComplexityRow]) -> pd.DataFrame:
    """The complexity columns of Tables 2 and 3, one line per measured row: parameters and GFLOPs measured here
    beside the paper's printed ones, the recount from the original authors' code (the `reference` figures of
    workbench/speed/published_figures.yaml), and fvcore's count."""
    lines = []
    for row in rows:
        record = csv_record(row)
        published = published_row(row.model, row.input_size)
        lines.append({
            "model": published.label if published else row.model,
            "input": record["input"],
            "table": _tables(row.model, row.input_size),
            "params measured (M)": round(row.parameters / 1e6, 3),
            "params printed (M)": record["paper params (M)"],
            "convention": row.convention,
            "GFLOPs measured, row's convention (2^30)": round(row.convention_ops() / G, 3),
            "GFLOPs printed": record["paper GFLOPs"],
            "measured vs printed (%)": record["recomputed vs paper (%)"],
            "GFLOPs recount, original code": record["table-rows recomputed GFLOPs (2^30)"],
            "fvcore GFLOPs measured (1e9)": round(row.fvcore / 1e9, 3),
        })
    return pd.DataFrame(lines)


def printed_only_frame() -> pd.DataFrame:
    """The published rows without a model in the zoo: printed figures only (their `reference` in
    workbench/speed/published_figures.yaml)."""
    return pd.DataFrame([{"model": row.label, "input": f"{row.input_size[0]}x{row.input_size[1]}",
                          "params printed": row.reference["params"],
                          "GFLOPs printed": f"{row.reference['gflops']} {row.reference['unit']}",
                          "AP printed (val2017)": row.reference["ap"]}
                         for row in published_rows() if not row.in_zoo and row.reference])


def latency_frame(rows: Sequence[ComplexityRow]) -> pd.DataFrame:
    """Measured CPU latency per image at batch 1 (median and range, milliseconds) of each timed row, with its
    fvcore GFLOPs and throughput; empty if nothing was timed."""
    lines = []
    for row in rows:
        if not row.latency:
            continue
        record = csv_record(row)
        line = {"model": row.model, "input": record["input"], "fvcore GFLOPs (1e9)": round(row.fvcore / 1e9, 3)}
        for backend in ("eager", "fast", "onnxruntime"):
            timing = row.latency.get(backend)
            line[f"{backend} ms (median)"] = None if timing is None else round(timing.median_ms, 1)
            line[f"{backend} ms (min-max)"] = None if timing is None else f"{timing.min_ms:.1f}-{timing.max_ms:.1f}"
        line["fast variant"] = row.fast_variant
        line[f"eager images/s (batch {row.throughput_batch})"] = record["eager images/s (batch N)"]
        lines.append(line)
    return pd.DataFrame(lines)


def notes_markdown(notes: Sequence[str]) -> str:
    """Notes as a Markdown list."""
    return "\n".join(f"- {note}" for note in notes)


def flops_latency_agreement(rows: Sequence[ComplexityRow]) -> str:
    """Markdown: per input size, how many pairs of timed models have their measured latency (eager, median) in the
    order of their fvcore FLOPs, and the pairs that are not (the cases where FLOPs mislead about speed)."""
    lines = []
    for size in sorted({row.input_size for row in rows if row.latency}):
        timed = sorted((row for row in rows if row.input_size == size and "eager" in row.latency),
                       key=lambda row: row.fvcore)
        pairs = [(a, b) for i, a in enumerate(timed) for b in timed[i + 1:]]
        against = [(a, b) for a, b in pairs if a.latency["eager"].median_ms > b.latency["eager"].median_ms]
        text = (f"- {size[0]}x{size[1]}: measured latency follows the FLOPs order for {len(pairs) - len(against)} of "
                f"{len(pairs)} pairs of models")
        if against:
            text += "; against it: " + "; ".join(
                f"{a.model} takes {a.latency['eager'].median_ms:.0f} ms with {a.fvcore / b.fvcore:.2f}x the FLOPs of "
                f"{b.model} ({b.latency['eager'].median_ms:.0f} ms)" for a, b in against)
        lines.append(text + ".")
    return "\n".join(lines) or "Nothing was timed (speed = \"none\")."


# AP columns of Tables 2 and 3

BASELINES = {ROUND_TRIP: "baseline: ground truth through the pipeline (round trip)",
             UNTRAINED_LABEL: "baseline: untrained (random init)"}
"""What each baseline line of `evaluation_table` is, in the words of the notebook."""


def measured_frame(table: pd.DataFrame) -> pd.DataFrame:
    """`evaluation_table`'s lines as notebook 03 shows them: first what each line is ("trained checkpoint" or a
    labelled baseline), then set, boxes, weights, model, input and decoding, then the METRICS in percent, each
    named "... measured"."""
    what = table["weights"].map(lambda weights: BASELINES.get(weights, "trained checkpoint")).rename("what")
    measured = pd.DataFrame({f"{name} measured": (100.0 * table[name].astype(float)).round(1) for name in METRICS})
    return pd.concat([what, table.drop(columns=["images", "parameters", *METRICS], errors="ignore"), measured], axis=1)


TABLE2_BOXES = "COCO_val2017_detections_AP_H_56_person.json"
"""The person boxes of the paper's Table 2 (val2017): a detector with 56.4 person AP, as Lite-HRNet's and HRNet's."""
MEASURED_AP = "AP measured here (COCO val2017, detector boxes, COCO-trained)"
MEASURED_GT_AP = "AP measured here (COCO val2017, ground-truth boxes, COCO-trained; not Table 2's protocol)"
COUNTERPART = "measured counterpart"


def trained_on_coco(entry: WeightsEntry) -> bool:
    """Whether a weights entry was trained on COCO train2017 (its manifest record's training annotations)."""
    data = entry.run.get("data") or {}
    return "train2017" in str(data.get("train", "") if isinstance(data, dict) else data)


def printed_ap_frame(measured: pd.DataFrame | None = None,
                     entries: Sequence[WeightsEntry] | None = None) -> pd.DataFrame:
    """The AP columns of Tables 2 and 3 as printed, one line per printed row, beside what was measured here for
    the same model and input size, like for like: only checkpoints the manifest (`entries`) records as trained on
    COCO train2017, only on COCO val2017, and by box type: detector boxes (Table 2's protocol, MEASURED_AP) apart
    from ground-truth boxes (MEASURED_GT_AP, higher by construction). COUNTERPART says in words why a printed number
    has no measured one. Without `entries` no checkpoint counts as COCO-trained. Table 3 (test-dev2017, whose
    annotations are not public) never has one."""
    coco_trained = {entry.name for entry in entries or () if trained_on_coco(entry)}
    evaluated = not (measured is None or measured.empty) and bool((measured["set"] == "coco-val2017").any())
    coco = pd.DataFrame() if measured is None or measured.empty else \
        measured[(measured["set"] == "coco-val2017") & (measured["what"] == "trained checkpoint")
                 & measured["weights"].isin(coco_trained)]
    lines = []
    for row in published_rows():
        table2, table3 = row.paper_row("seed_table2"), row.paper_row("seed_table3")
        if not (table2 or table3):
            continue
        size = f"{row.input_size[0]}x{row.input_size[1]}"
        mine = coco[(coco["model"] == row.model) & (coco["input"] == size)] if not coco.empty else coco
        line = {"model": row.label, "input": size, "params printed (M)": (table2 or table3).params_m}
        for name in METRICS:
            line[f"{name} printed, Table 2 (val2017)"] = getattr(table2, name.lower()) if table2 else np.nan
        line["AP printed, Table 3 (test-dev2017)"] = table3.ap if table3 else np.nan
        detected = mine[mine["boxes"].str.startswith("detections")] if len(mine) else mine
        truth = mine[~mine["boxes"].str.startswith("detections")] if len(mine) else mine
        line[MEASURED_AP] = detected["AP measured"].max() if len(detected) else np.nan
        line[MEASURED_GT_AP] = truth["AP measured"].max() if len(truth) else np.nan
        line[COUNTERPART] = _counterpart(row.model, size, evaluated, coco_trained, entries or (), detected, truth)
        lines.append(line)
    return pd.DataFrame(lines)


def _counterpart(model: str, size: str, evaluated: bool, coco_trained: set[str], entries: Sequence[WeightsEntry],
                 detected: pd.DataFrame, truth: pd.DataFrame) -> str:
    """In words: whether the printed row has a measured counterpart, and if not, why."""
    if len(detected):
        return "yes: detector boxes, as Table 2"
    if not any(e.model == model and f"{e.input_size[0]}x{e.input_size[1]}" == size and e.name in coco_trained
               for e in entries):
        return "none: no COCO-trained weights of this model and size in the manifest"
    if not evaluated:
        return "none: COCO val2017 not evaluated (set coco_root)"
    if len(truth):
        return f"partly: ground-truth boxes only (pass coco_detections = {TABLE2_BOXES} for Table 2's)"
    return "none: not evaluated on COCO val2017"


def manifest_frame(entries: Sequence[WeightsEntry]) -> pd.DataFrame:
    """The weights manifest as a table: each entry's model, input size, training data and epochs, and the metrics
    recorded when it was trained (empty, with its columns, when the manifest is)."""
    lines = [{"weights": e.name, "model": e.model, "input": f"{e.input_size[0]}x{e.input_size[1]}",
              "data": e.run.get("data"), "epochs": e.run.get("epochs"),
              **{f"recorded {k}": v for k, v in e.metrics.items() if not isinstance(v, (dict, list))}}
             for e in entries]
    return pd.DataFrame(lines, columns=None if lines else ["weights", "model", "input", "data", "epochs"])


def manifest_status(entries: Sequence[WeightsEntry]) -> str:
    """Markdown: which trained checkpoints the manifest offers, or plainly that it offers none yet."""
    if not entries:
        return ("**The weights manifest (weights/manifest.json) has no entries yet**: no trained checkpoint is "
                "evaluated below, only the labelled baselines. Once entries appear, this notebook evaluates each of "
                "them, unchanged.")
    return (f"**{len(entries)} trained checkpoint(s) in the weights manifest**, each evaluated below: "
            + ", ".join(f"`{e.name}` ({e.model}, {e.input_size[0]}x{e.input_size[1]})" for e in entries) + ".")


def evaluation_reading(measured: pd.DataFrame, sets: Sequence[EvalSet]) -> str:
    """Markdown: which numbers of the two tables were measured here, on which images, and which are printed."""
    names = ", ".join(f"{s.name} ({s.boxes} boxes)" for s in sets)
    trained = measured[measured["what"] == "trained checkpoint"] if not measured.empty else measured
    lines = [f"- **Measured here** (columns ending in \"measured\"): every row of the first table, on {names}.",
             "- **Printed** (columns with \"printed\"): the paper's Tables 2 (COCO val2017) and 3 (COCO "
             "test-dev2017), copied from workbench/speed/published_figures.yaml, not recomputed."]
    lines.append(f"- **Boxes**: the paper's Table 2 uses detector boxes ({TABLE2_BOXES}); Table 3 (test-dev2017) "
                 "has no measured counterpart here (its annotations are not public). Beside them, only checkpoints "
                 "the manifest records as trained on COCO train2017 count, on COCO val2017, detector boxes and "
                 "ground-truth boxes in separate columns; the column \"measured counterpart\" says for each printed "
                 "row whether there is one and, if not, why.")
    if not any(s.name == "coco-val2017" for s in sets):
        lines.append("- No COCO val2017 here, so the columns \"AP measured here (COCO val2017, ...)\" are empty: APs "
                     "on the sample sets (a few COCO images, studio photos) are not comparable to the printed ones, and "
                     "no printed number has a measured counterpart.")
    detected = [s.name for s in sets if s.detections is not None]
    if detected:
        lines.append(f"- No {BASELINES[ROUND_TRIP]} on {', '.join(detected)}: a detector's box has no ground-truth "
                     "person of its own to render, so it runs only on sets with ground-truth boxes. The same images "
                     "with those give the ceiling: coco-sample-gt for coco-sample, COCO val2017 without "
                     "coco_detections.")
    if trained.empty:
        lines.append("- No trained checkpoint was evaluated: the baselines bound what the pipeline can give, from "
                     "the untrained floor to the round-trip ceiling.")
    return "\n".join(lines)


# Training

def training_config(model: str = "lite_csw_hrnet", input_size: Sequence[int] = (256, 192), epochs: int | None = None,
                    device: str = "auto", threads: int | None = None, coco_root: str | Path | None = None,
                    overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The shipped config of `model` at `input_size` (H, W): on COCO (`coco_root`: the folder holding
    annotations/, train2017/ and val2017/) its `_coco` recipe; otherwise on the fashion-pose sample, its `_fashion`
    config if one is shipped, else its COCO recipe pointed at the fashion-pose data. Then `epochs` (None: the
    config's), `device`, `threads`, no progress bars, and the "key=value" `overrides`."""
    height, width = (int(v) for v in input_size)
    coco_name, fashion_name = f"{model}_{height}x{width}_coco", f"{model}_{height}x{width}_fashion"
    if coco_name not in config_names():
        raise WorkbenchError(f"no shipped config for {model} at {height}x{width}. Choose a model and input size of: "
                             f"{', '.join(n.removesuffix('_coco') for n in config_names() if n.endswith('_coco'))}.")
    settings = [f"train.device={device}", "output.progress=false"]
    if threads:
        settings.append(f"train.threads={threads}")
    if epochs:
        settings.append(f"train.epochs={int(epochs)}")
    if coco_root:
        coco = Path(coco_root).expanduser().resolve()
        paths = {"train_annotations": coco / "annotations" / "person_keypoints_train2017.json",
                 "train_images": coco / "train2017",
                 "val_annotations": coco / "annotations" / "person_keypoints_val2017.json",
                 "val_images": coco / "val2017"}
        return load_config(coco_name, [*settings, *(f"data.{k}={v}" for k, v in paths.items()), *overrides])
    if fashion_name in config_names():
        return load_config(fashion_name, [*settings, *overrides])
    fashion = load_config("lite_csw_hrnet_256x192_fashion")["data"]
    data = [f"data.{key}={fashion[key]}" for key in ("train_annotations", "train_images", "val_annotations",
                                                       "val_images", "enclose_keypoints")]
    config = load_config(coco_name, [*settings, *data, *overrides])
    config["name"] = fashion_name
    return config


def new_run_dir(config: dict[str, Any]) -> Path:
    """A new run folder for `config`: runs/notebooks/<config name>-<UTC date and time>."""
    return REPO_ROOT / "runs" / "notebooks" / f"{config['name']}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def train_in_chunks(config: dict[str, Any], run_dir: str | Path,
                    on_update: Callable[[Path], None] | None = None) -> TrainingResult:
    """Train `config` into `run_dir`, continuing from its last.pt when there is one, a chunk of
    `validation.every` epochs at a time (each chunk resumes from the checkpoint the last one saved, so the run is
    the same as one uninterrupted call of `train`); after each chunk, `on_update(run_dir)` (e.g. to redraw the
    curves). Stops early if a chunk was stopped by a signal (its last.pt continues it)."""
    run_dir = Path(run_dir)
    total, every = config["train"]["epochs"], config["validation"]["every"] or config["train"]["epochs"]
    records = read_log(run_dir / LOG) if (run_dir / LOG).is_file() else []
    done = records[-1]["epoch"] if records else 0
    stops = [*range((done // every + 1) * every, total, every), total]
    result = None
    for stop in stops:
        last = run_dir / LAST
        result = train(build_config(config, [f"train.epochs={stop}"]), run_dir, last if last.is_file() else None)
        if on_update is not None and (run_dir / LOG).is_file():
            on_update(run_dir)
        if result.stopped_by is not None:
            break
    return result


def training_frame(run_dir: str | Path) -> pd.DataFrame:
    """One line per epoch of a run's log: loss, learning rate, images per second and the validation metrics
    (percent) where measured."""
    lines = []
    for record in read_log(Path(run_dir) / LOG):
        line = {"epoch": record["epoch"], "loss": record["loss"], "lr": record["lr"],
                "images/s": round(record["images_per_second"], 1)}
        line.update({name: None if record.get(name) is None else round(100.0 * record[name], 1)
                     for name in ("AP", "AP50", "AP75", "AR")})
        lines.append(line)
    return pd.DataFrame(lines)


def curves_path(run_dir: str | Path) -> Path:
    """The training-curves PNG the trainer draws beside the log."""
    return Path(run_dir) / CURVES


def live_training_view() -> Callable[[Path], None]:
    """An `on_update` for `train_in_chunks` in Jupyter: one output area, redrawn after every chunk with the
    training curves and the per-epoch table."""
    from IPython.display import Image, display

    handles: list = []

    def update(run_dir: Path) -> None:
        content = [Image(filename=str(curves_path(run_dir))), training_frame(run_dir)]
        if not handles:
            handles.extend(display(item, display_id=True) for item in content)
        else:
            for handle, item in zip(handles, content):
                handle.update(item)

    return update


def training_summary(result: TrainingResult) -> str:
    """Markdown: how the run ended, its best validation AP and where its checkpoints are (relative to the
    repository), and the command that turns the finished run into a weights entry notebooks 03 and 04 read."""
    best = ("not validated" if result.best_metric is None
            else f"best validation AP {100 * result.best_metric:.1f} at epoch {result.best_epoch}")
    ending = f"stopped by {result.stopped_by}; continue it by running again with run_dir set to its folder" \
        if result.stopped_by else "done"
    text = (f"**{ending}**: {result.epochs_done} epochs, {result.step} optimiser steps, {best}. Checkpoints "
            f"`{shown(result.checkpoint)}` (last) and `{shown(result.output / BEST)}` (best).")
    if not result.stopped_by:
        text += (f"\n\nNotebooks 03 and 04 read only the weights manifest. To add this run to it: "
                 f"`{publish_command(result.output)}` (its final weights, log and curves into weights/, its record "
                 "into weights/manifest.json); then run 03 (and 04) again.")
    return text


def publish_command(run_dir: str | Path) -> str:
    """The command that makes a finished run a weights entry (`workbench.training.publishing`)."""
    return f"python -m workbench weights publish {shown(run_dir)}"
