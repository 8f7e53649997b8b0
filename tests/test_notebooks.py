"""The reproduction notebooks: executed with quick parameters through `workbench.notebooks.execute` (their outputs hold
real figures and tables of numbers), the committed copies executed, the kernel of this environment, the command's
refusals, and the readings and summaries the notebooks print, on hand-made inputs."""
from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from model import build_model
from workbench.cli import main
from workbench.speed.complexity import ComplexityRow
from workbench.common.errors import WorkbenchError
from workbench.reports.evaluation import evaluation_table
from workbench.evaluation.sets import evaluation_sets
from workbench.speed.onnx_export import conditioned_random_weights
from workbench.speed.latency import Timing
from workbench.notebooks.execute import NOTEBOOK_DIR, NOTEBOOKS, check_kernel, execute_notebooks, notebook_names, \
    notebook_parameters, parse_parameters, relative_metadata
from workbench.notebooks.reproduction import COUNTERPART, MEASURED_AP, MEASURED_GT_AP, evaluation_reading, \
    flops_latency_agreement, manifest_frame, manifest_status, measured_frame, printed_ap_frame, publish_command, \
    table_rows, training_config, training_summary
from workbench.common.paths import REPO_ROOT
from workbench.training import TrainingResult
from workbench.zoo.manifest import WeightsEntry
from workbench.interpret.weight_stats import weight_statistics
from workbench.interpret.weight_stats_plots import statistics_frame, weight_statistics_figure
from workbench.zoo.loader import untrained
from workbench.zoo.manifest import read_manifest, save_weights


def _outputs(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def _images(notebook: nbformat.NotebookNode) -> list[str]:
    """The figures (PNG or JPEG, base64) among the outputs."""
    return [output.data[kind] for output in _outputs(notebook) for kind in ("image/png", "image/jpeg")
            if kind in output.get("data", {})]


def _tables(notebook: nbformat.NotebookNode) -> list[str]:
    return [o.data["text/html"] for o in _outputs(notebook) if "<table" in o.get("data", {}).get("text/html", "")]


def _text(notebook: nbformat.NotebookNode) -> str:
    parts = []
    for output in _outputs(notebook):
        parts.append(output.get("text", ""))
        parts += [output.get("data", {}).get(kind, "") for kind in ("text/markdown", "text/plain", "text/html")]
    return "\n".join(parts)


FIGURES = {"01_complexity", "02_training", "04_inside_csw"}
"""The notebooks that draw figures (03 shows tables only)."""


def _check_executed(notebook: nbformat.NotebookNode, name: str) -> None:
    first = notebook.cells[0]
    assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", []), name
    assert not [o for o in _outputs(notebook) if o.output_type == "error"], name
    assert all(c.execution_count for c in notebook.cells if c.cell_type == "code" and c.source.strip()), name
    assert _tables(notebook) and (bool(_images(notebook)) == (name in FIGURES)), name


@pytest.fixture(scope="module")
def quick_notebooks(data_root, tmp_path_factory) -> dict[str, nbformat.NotebookNode]:
    """Every notebook executed with QUICK_PARAMETERS into a temporary folder."""
    runs = execute_notebooks(quick=True, output=tmp_path_factory.mktemp("notebooks"))
    assert [run.name for run in runs] == list(NOTEBOOKS)
    return {run.name: nbformat.read(run.path, as_version=4) for run in runs}


def test_quick_notebooks_run_every_cell_with_real_outputs(quick_notebooks):
    for name, notebook in quick_notebooks.items():
        _check_executed(notebook, name)
        assert any(cell.metadata.get("tags") == ["injected-parameters"] for cell in notebook.cells), name


def test_complexity_notebook_measures_beside_printed(quick_notebooks):
    notebook = quick_notebooks["01_complexity"]
    text = _text(notebook)
    assert "Lite CSW-HRNet" in text and "0.885" in text and "0.189" in text  # 884,863 parameters, 0.189 G (B)
    assert re.search(r"latency follows the FLOPs order for \d+ of 1 pairs", text)
    assert len(_images(notebook)) == 2  # Figure 9 and latency against FLOPs


def test_training_notebook_validates_resumes_and_draws_curves(quick_notebooks):
    text = _text(quick_notebooks["02_training"])
    assert "epoch 1: validation AP" in text and "epoch 2: validation AP" in text
    assert "resumed from" in text and "**done**: 2 epochs, 4 optimiser steps" in text
    assert _images(quick_notebooks["02_training"])


def test_evaluation_notebook_labels_measured_printed_and_baselines(quick_notebooks):
    text = _text(quick_notebooks["03_evaluation"])
    assert "baseline: ground truth through the pipeline" in text and "baseline: untrained" in text
    assert "64.2" in text and "67.2" in text  # Lite CSW-HRNet's printed AP, Table 2
    assert "Measured here" in text and "Printed" in text
    assert ("has no entries yet" in text) or ("trained checkpoint(s) in the weights manifest" in text)


def test_inside_notebook_shows_maps_cams_and_computed_readings(quick_notebooks):
    notebook = quick_notebooks["04_inside_csw"]
    text = _text(notebook)
    assert "What the numbers say" in text and "Measured over coco-sample" in text
    assert re.search(r"spatial weights at the labelled joints are \d+\.\d\d times", text)
    # skeletons, two locations, heatmaps, Grad-CAM for two models, the statistics figure
    assert len(_images(notebook)) == 1 + 2 + 1 + 2 + 1


def test_committed_notebooks_are_executed():
    for name in NOTEBOOKS:
        _check_executed(nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4), name)


def test_kernel_is_this_environment():
    assert check_kernel().parent == Path(sys.executable).absolute().parent


def test_notebook_names_and_refusals(capsys):
    assert notebook_names(["02", "evaluation", "04_inside_csw.ipynb"]) == ["02_training", "03_evaluation",
                                                                          "04_inside_csw"]
    assert notebook_names() == list(NOTEBOOKS)
    with pytest.raises(WorkbenchError, match="unknown notebook 'nope'"):
        notebook_names(["nope"])
    with pytest.raises(SystemExit) as stopped:
        main(["notebooks", "nope"])
    assert stopped.value.code == 2 and "unknown notebook 'nope'" in capsys.readouterr().err


def test_rows_configs_and_printed_ap():
    assert ("resnet152", (384, 288)) in table_rows() and ("resnet152", (256, 192)) not in table_rows()
    assert table_rows(["lite_csw_hrnet"], [[384, 288]]) == [("lite_csw_hrnet", (384, 288))]
    config = training_config("lite_hrnet_30", (256, 192), epochs=3, threads=1)
    assert config["name"] == "lite_hrnet_30_256x192_fashion" and config["train"]["epochs"] == 3
    assert config["data"]["train_annotations"] == "fashion-pose/person_keypoints_train.json"
    coco = training_config("lite_csw_hrnet", (384, 288), coco_root="/datasets/coco")
    assert coco["data"]["val_images"] == "/datasets/coco/val2017" and coco["train"]["epochs"] == 210
    with pytest.raises(WorkbenchError, match="no shipped config"):
        training_config("lite_csw_hrnet", (128, 96))
    printed = printed_ap_frame().set_index(["model", "input"])
    assert printed.loc[("Lite CSW-HRNet", "384x288"), "AP printed, Table 3 (test-dev2017)"] == 66.6
    assert printed[MEASURED_AP].isna().all() and printed[MEASURED_GT_AP].isna().all()
    assert printed[COUNTERPART].str.startswith("none: no COCO-trained weights").all()


def test_evaluation_takes_manifest_entries_as_they_appear(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_WEIGHTS", str(tmp_path))
    assert read_manifest() == [] and "has no entries yet" in manifest_status([])
    save_weights(untrained("lite_csw_hrnet"), "csw_test", run={"data": "none", "epochs": 0},
                 metrics={"val_AP": 0.0})
    entries = read_manifest()
    assert manifest_frame(entries)["recorded val_AP"].tolist() == [0.0] and "`csw_test`" in manifest_status(entries)
    coco_sample, coco_sample_gt = evaluation_sets(["coco-sample", "coco-sample-gt"], root=data_root)
    ground_truth = dataclasses.replace(coco_sample_gt, name="coco-val2017")  # stands in for val2017
    sets = [ground_truth, coco_sample]
    table = evaluation_table(entries, sets, ["standard"], flip=False, progress=False, untrained=["lite_hrnet_18"])
    measured = measured_frame(table)
    assert measured[["what", "set", "model"]].values.tolist() == [
        ["trained checkpoint", "coco-val2017", "lite_csw_hrnet"],
        ["trained checkpoint", "coco-sample", "lite_csw_hrnet"],
        ["baseline: untrained (random init)", "coco-val2017", "lite_hrnet_18"],
        ["baseline: untrained (random init)", "coco-sample", "lite_hrnet_18"],
        ["baseline: ground truth through the pipeline (round trip)", "coco-val2017", "-"]]  # none on detector boxes
    assert table["AP"].iloc[-1] == 1.0 and measured["AP measured"].iloc[-1] == 100.0
    assert measured["AP measured"].tolist() == [round(100 * ap, 1) for ap in table["AP"]]
    printed = printed_ap_frame(measured, entries).set_index(["model", "input"])  # csw_test: not COCO-trained
    assert np.isnan(printed.loc[("Lite CSW-HRNet", "256x192"), MEASURED_GT_AP])
    coco_trained = [dataclasses.replace(entries[0], run={"data": {"train": "coco/person_keypoints_train2017.json"}})]
    printed = printed_ap_frame(measured, coco_trained).set_index(["model", "input"])
    assert printed.loc[("Lite CSW-HRNet", "256x192"), MEASURED_GT_AP] == measured["AP measured"][0]
    assert printed.loc[("Lite CSW-HRNet", "256x192"), COUNTERPART].startswith("partly: ground-truth boxes only")
    reading = evaluation_reading(measured, sets)
    assert "No baseline: ground truth through the pipeline (round trip) on coco-sample:" in reading
    assert "No trained checkpoint" not in reading


def _row(model: str, gflops: float, ms: float) -> ComplexityRow:
    row = ComplexityRow(model, (256, 192), 1, int(gflops * 1e9), 0, 0, "B")
    row.latency["eager"] = Timing(ms, ms, ms, 3)
    return row


def test_flops_latency_agreement_names_the_pairs_against_the_flops_order():
    text = flops_latency_agreement([_row("a", 0.2, 60.0), _row("b", 0.5, 30.0), _row("c", 1.0, 90.0)])
    assert "follows the FLOPs order for 2 of 3 pairs" in text
    assert "a takes 60 ms with 0.40x the FLOPs of b (30 ms)" in text


def test_weight_statistics_table_and_figure():
    torch.manual_seed(0)
    statistics = {name: weight_statistics(conditioned_random_weights(build_model(name), (64, 64)),
                                          [torch.randn(2, 3, 64, 64)]) for name in ("lite_csw_hrnet", "lite_hrnet_18")}
    frame = statistics_frame(statistics)
    assert set(frame["weights"]) == {"cross channel", "cross spatial", "single channel", "single spatial",
                                     "cross weights"}
    assert np.allclose(frame["saturated"], frame["near_0"] + frame["near_1"])
    assert (frame[frame["model"] == "lite_csw_hrnet"]["across_image_std"] > 0).all()
    figure = weight_statistics_figure(statistics, "test")
    axes = figure.get_axes()
    assert len(axes) == 4 and all(len(a.patches) >= len(frame) for a in axes[1:])
    with pytest.raises(ValueError, match="no weight maps"):
        weight_statistics_figure({"small_hrnet_w16": []})


def _entry(name: str, model: str, train: str) -> WeightsEntry:
    return WeightsEntry(name, model, (256, 192), f"{name}.pt", "0" * 64, run={"data": {"train": train}})


def test_printed_ap_is_set_beside_coco_trained_checkpoints_only_and_by_box_type():
    """Notebook 03's filter: a fashion-trained checkpoint's AP (even on val2017) is never set beside the paper's,
    detector boxes and ground-truth boxes stay apart, and every printed row says whether it has a counterpart."""
    import pandas as pd

    entries = [_entry("csw_fashion", "lite_csw_hrnet", "fashion-pose/person_keypoints_train.json"),
               _entry("csw_coco", "lite_csw_hrnet", "coco/annotations/person_keypoints_train2017.json"),
               _entry("hrnet18_coco", "lite_hrnet_18", "coco/annotations/person_keypoints_train2017.json")]
    rows = [("csw_fashion", "lite_csw_hrnet", "detections (x.json)", 80.0),
            ("csw_coco", "lite_csw_hrnet", "detections (x.json)", 60.0),
            ("csw_coco", "lite_csw_hrnet", "ground truth", 62.0),
            ("hrnet18_coco", "lite_hrnet_18", "ground truth", 61.0)]
    measured = pd.DataFrame([{"what": "trained checkpoint", "set": "coco-val2017", "boxes": boxes, "weights": weights,
                              "model": model, "input": "256x192", "AP measured": ap}
                             for weights, model, boxes, ap in rows])
    printed = printed_ap_frame(measured, entries).set_index(["model", "input"])
    csw, hrnet18 = printed.loc[("Lite CSW-HRNet", "256x192")], printed.loc[("Lite-HRNet-18", "256x192")]
    assert (csw[MEASURED_AP], csw[MEASURED_GT_AP], csw[COUNTERPART]) == (60.0, 62.0, "yes: detector boxes, as Table 2")
    assert np.isnan(hrnet18[MEASURED_AP]) and hrnet18[MEASURED_GT_AP] == 61.0
    assert hrnet18[COUNTERPART].startswith("partly: ground-truth boxes only")
    assert printed.loc[("Lite CSW-HRNet", "384x288"), COUNTERPART].startswith("none: no COCO-trained weights")
    without_coco = printed_ap_frame(measured[measured["set"] == "nothing"], entries).set_index(["model", "input"])
    assert without_coco.loc[("Lite CSW-HRNet", "256x192"), COUNTERPART] == \
        "none: COCO val2017 not evaluated (set coco_root)"


def test_notebook_parameters_come_from_the_command_line(tmp_path, monkeypatch, capsys):
    """`python -m workbench notebooks NAME -p name value`: values read as papermill reads them, passed to
    execute_notebooks (the execution itself is the quick fixture's), unknown names refused before anything runs."""
    assert parse_parameters([["epochs", "None"], ["input_size", "[384, 288]"], ["device", "cuda"], ["threads", "4"],
                             ["coco_root", "/data/coco"]]) == {"epochs": None, "input_size": [384, 288],
                                                              "device": "cuda", "threads": 4,
                                                              "coco_root": "/data/coco"}
    assert {"coco_root", "epochs", "device", "overrides"} <= notebook_parameters("02_training")
    import workbench.notebooks.execute as execute

    calls = []
    monkeypatch.setattr(execute, "execute_notebook",
                        lambda name, target, parameters: calls.append((name, target, parameters)) or
                        execute.NotebookRun(name, target, 0.0))
    with pytest.raises(SystemExit) as stopped:
        main(["notebooks", "02", "03", "--output", str(tmp_path), "-p", "epochs", "3", "-p", "device", "cpu",
              "-p", "coco_root", "/data/coco"])
    assert stopped.value.code == 0
    assert [(name, parameters) for name, _, parameters in calls] == [
        ("02_training", {"epochs": 3, "device": "cpu", "coco_root": "/data/coco"}),
        ("03_evaluation", {"device": "cpu", "coco_root": "/data/coco"})]  # 03 has no epochs
    calls.clear()
    with pytest.raises(SystemExit):
        main(["notebooks", "02", "--quick", "--output", str(tmp_path), "-p", "epochs", "1"])
    assert calls[0][2]["epochs"] == 1 and calls[0][2]["overrides"]  # over the quick parameters
    with pytest.raises(SystemExit) as stopped:
        main(["notebooks", "03", "-p", "epochs", "3"])
    assert stopped.value.code == 2 and "no chosen notebook has the parameter(s) epochs" in capsys.readouterr().err
    assert not calls[1:]


ABSOLUTE = re.compile(r"(/work/|/home/|/tmp/|/root/|/Users/|[A-Za-z]:\\\\Users)")
"""Absolute paths of a machine that executed a notebook."""


def test_no_committed_notebook_holds_an_absolute_path():
    """Outputs and metadata (papermill's input and output paths, printed run folders) of every committed
    notebook are free of the executing machine's absolute paths."""
    found = {path.name: sorted(set(ABSOLUTE.findall(path.read_text(encoding="utf-8"))))
             for path in sorted(NOTEBOOK_DIR.glob("*.ipynb"))}
    assert len(found) == len(NOTEBOOKS)
    assert not {name: hits for name, hits in found.items() if hits}


def test_executed_copies_record_paths_relative_to_the_repository(tmp_path):
    printed = [f"run folder: {REPO_ROOT}/runs/x\n", "epoch 1\n"]
    notebook = {"metadata": {"papermill": {"input_path": str(NOTEBOOK_DIR / "02_training.ipynb"),
                                           "output_path": "/tmp/workbench-02-x/02_training.ipynb"}},
                "cells": [{"cell_type": "code", "outputs": [{"output_type": "stream", "text": printed},
                                                             {"data": {"text/markdown": f"`{REPO_ROOT}/runs/x`"}}]}]}
    relative = relative_metadata(notebook, NOTEBOOK_DIR / "02_training.ipynb")
    record = relative["metadata"]["papermill"]
    assert record == {"input_path": "notebooks/02_training.ipynb", "output_path": "notebooks/02_training.ipynb"}
    outputs = relative["cells"][0]["outputs"]
    assert outputs[0]["text"] == ["run folder: runs/x\n", "epoch 1\n"] and outputs[1]["data"]["text/markdown"] == \
        "`runs/x`"
    elsewhere = relative_metadata(notebook, tmp_path / "02_training.ipynb")["metadata"]["papermill"]
    assert elsewhere["output_path"] == "02_training.ipynb"
    run = REPO_ROOT / "runs" / "notebooks" / "x"
    result = TrainingResult(0, run, 2, 4, 0.5, 2, None, run / "last.pt")
    summary = training_summary(result)
    assert str(REPO_ROOT) not in summary and "`runs/notebooks/x/last.pt`" in summary
    assert publish_command(run) == "python -m workbench weights publish runs/notebooks/x" and publish_command(run) in \
        summary
