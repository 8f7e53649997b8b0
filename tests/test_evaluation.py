"""The ground-truth round trip, COCO results, COCOeval metrics, and the evaluate command end to end."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from model import build_model
from workbench.cli import main
from workbench.data.dataset import CocoKeypoints
from workbench.common.errors import WorkbenchError
from workbench.evaluation.metrics import EMPTY_RESULTS_MESSAGE, METRIC_NAMES, coco_results, evaluate_dataset, \
    evaluate_keypoints, format_metrics, has_keypoint_annotations, paired_bootstrap, predict_dataset, round_trip
from workbench.reports.evaluation import METRICS, ROUND_TRIP, evaluation_figure, markdown_report
from workbench.inference import oks_to_many
from workbench.common.paths import REPO_ROOT
from workbench.training.data import keep_first
from workbench.training.loop import validate
from workbench.zoo.loader import untrained
from workbench.zoo.manifest import save_weights


def _coco_sample(data_root: Path) -> tuple[Path, Path]:
    return data_root / "coco-sample" / "test_coco.json", data_root / "coco-sample"


def _fashion_val(data_root: Path) -> tuple[Path, Path]:
    return data_root / "fashion-pose" / "person_keypoints_val.json", data_root / "fashion-pose" / "images"


def _ap(dataset: CocoKeypoints, **options) -> dict:
    results = coco_results(round_trip(dataset, **options), category_id=dataset.category_id)
    return evaluate_keypoints(dataset.coco, results)


# the round trip: ground truth -> targets -> flip test -> decoding -> back-projection -> COCOeval

@pytest.mark.parametrize("decode, input_size", [("standard", (256, 192)), ("dark", (256, 192)),
                                                ("standard", (384, 288))])
def test_round_trip_on_coco_sample_gives_full_ap(data_root, decode, input_size):
    dataset = CocoKeypoints(*_coco_sample(data_root), input_size=input_size)
    metrics = _ap(dataset, decode=decode)
    assert metrics["AP"] >= 0.99 and metrics["AR"] >= 0.99
    assert metrics["per_joint"]["_instances"] == {"matched": 12, "ground_truth": 12}


def test_round_trip_on_fashion_val_gives_full_ap_once_boxes_contain_their_keypoints(data_root):
    dataset = CocoKeypoints(*_fashion_val(data_root), enclose_keypoints=True)
    assert len(dataset) == 100 and dataset.boxes_missing_keypoints == 0
    assert _ap(dataset)["AP"] >= 0.99


def test_round_trip_on_fashion_val_fails_only_where_the_box_misses_keypoints(data_root):
    dataset = CocoKeypoints(*_fashion_val(data_root))
    assert dataset.boxes_missing_keypoints == 5  # boxes drawn beside their person: an annotation defect
    predictions = round_trip(dataset)
    truth = np.stack([instance.joints for instance in dataset.instances])
    areas = [dataset.coco["annotations"][i]["area"] for i in range(100)]
    assert [a["image_id"] for a in dataset.coco["annotations"]] == [i.image_id for i in dataset.instances]
    oks = np.array([oks_to_many(truth[i, :, :2], areas[i], predictions.keypoints[i:i + 1, :, :2],
                                np.array([areas[i]]))[0] for i in range(100)])
    flagged = np.array([dataset.joints_outside_crop(i) for i in range(100)])
    assert oks[~flagged].min() > 0.95 and oks[flagged].max() < oks[~flagged].min()
    assert evaluate_keypoints(dataset.coco, coco_results(predictions))["AP"] >= 0.97


# results and metrics

def test_results_are_in_coco_submission_format(data_root):
    dataset = CocoKeypoints(*_coco_sample(data_root))
    results = coco_results(round_trip(dataset), category_id=dataset.category_id)
    assert len(results) == 12
    for result in results:
        assert set(result) == {"image_id", "category_id", "keypoints", "score"} and len(result["keypoints"]) == 51
        assert result["image_id"] in dataset.images and 0 < result["score"] <= 1
    json.dumps(results)


def test_detections_flow_through_rescoring_and_oks_nms(data_root, stand_in_model):
    annotations, images = _coco_sample(data_root)
    dataset = CocoKeypoints(annotations, images, detections=annotations.parent / "test_coco_det_AP_H_56.json",
                            with_targets=False)
    predictions = predict_dataset(stand_in_model, dataset, flip=False, batch_size=64, progress=False)
    assert len(predictions.image_ids) == 118
    everything = coco_results(predictions, oks_threshold=1.0)
    suppressed = coco_results(predictions, oks_threshold=0.5)
    assert len(everything) == 118 and len(suppressed) < 118
    for image_id in dataset.images:  # NMS works within each image
        assert 0 < sum(r["image_id"] == image_id for r in suppressed) <= sum(predictions.image_ids == image_id)
    metrics = evaluate_keypoints(dataset.coco, suppressed)
    assert all(metrics[name] is None or 0.0 <= metrics[name] <= 1.0 for name in METRIC_NAMES)


def test_an_empty_result_set_scores_zero_with_a_message(data_root):
    dataset = CocoKeypoints(*_coco_sample(data_root))
    metrics = evaluate_keypoints(dataset.coco, [])
    assert all(metrics[name] == 0.0 for name in METRIC_NAMES) and metrics["message"] == EMPTY_RESULTS_MESSAGE
    assert "cannot evaluate an empty result set" in format_metrics(metrics)


def test_every_image_of_the_dataset_counts_so_missed_persons_lower_recall(data_root):
    dataset = CocoKeypoints(*_coco_sample(data_root))
    assert evaluate_dataset(None, dataset, flip=False)["per_joint"]["_instances"] == {"matched": 12,
                                                                                       "ground_truth": 12}
    missed = dataset.instances[0].image_id
    lost = sum(instance.image_id == missed for instance in dataset.instances)
    dataset.instances = [i for i in dataset.instances if i.image_id != missed]  # as if no box had been found there
    metrics = evaluate_dataset(None, dataset, flip=False)
    assert metrics["per_joint"]["_instances"] == {"matched": 12 - lost, "ground_truth": 12} and metrics["AR"] < 1


def test_validation_on_a_subset_evaluates_the_images_it_kept(data_root, stand_in_model):
    dataset = CocoKeypoints(*_coco_sample(data_root))
    keep_first(dataset, 5)  # cuts the instances of one image short
    kept = {instance.image_id for instance in dataset.instances}
    persons = sum(a["image_id"] in kept and a["num_keypoints"] > 0 for a in dataset.coco["annotations"])
    assert len(dataset) == 5 < persons
    config = {"validation": {"flip": False, "batch_size": 4}, "data": {"workers": 0}}
    metrics = validate(stand_in_model, dataset, config, progress=False)
    predictions = predict_dataset(stand_in_model, dataset, flip=False, progress=False)
    assert metrics == evaluate_keypoints(dataset.coco, coco_results(predictions), sorted(kept))
    assert metrics["per_joint"]["_instances"]["ground_truth"] == persons and stand_in_model.training


def test_files_without_keypoint_ground_truth_are_not_evaluated(data_root):
    coco = json.loads(_coco_sample(data_root)[0].read_text())
    image_info = {key: value for key, value in coco.items() if key != "annotations"}
    assert has_keypoint_annotations(coco) and not has_keypoint_annotations(image_info)
    with pytest.raises(WorkbenchError, match="no keypoint ground truth"):
        evaluate_keypoints(image_info, [{"image_id": 785, "category_id": 1, "keypoints": [0] * 51, "score": 1}])


# the evaluate command

def _cli(*arguments: str | Path) -> int:
    with pytest.raises(SystemExit) as exited:
        main(list(map(str, arguments)))
    return exited.value.code


def _evaluate(*arguments: str | Path) -> int:
    return _cli("evaluate", *arguments)


def test_evaluate_command_round_trip_writes_results_and_metrics(data_root, tmp_path, capsys):
    annotations, images = _coco_sample(data_root)
    code = _evaluate("--round-trip", "--annotations", annotations, "--images", images, "--workers", "0",
                     "--output", tmp_path)
    printed = capsys.readouterr().out
    assert code == 0 and "100.0" in printed and "12 instances" in printed
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    results = json.loads((tmp_path / "person_keypoints_test-coco_round-trip_results.json").read_text())
    assert metrics["AP"] >= 0.99 and metrics["instances"] == 12 and len(results) == metrics["results"] == 12
    assert metrics["skipped"] == {"no_visible_keypoints": 2} and metrics["settings"]["flip"] is True


def test_evaluate_command_with_onnx_and_detections(data_root, stand_in_onnx, tmp_path, capsys):
    annotations, images = _coco_sample(data_root)
    code = _evaluate("--onnx", stand_in_onnx, "--annotations", annotations, "--images", images,
                     "--detections", annotations.parent / "test_coco_det_AP_H_56.json", "--score-threshold", "0.5",
                     "--workers", "1", "--output", tmp_path / "out")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert code == 0 and metrics["skipped"]["below_score_threshold"] == 118 - metrics["instances"]
    assert 0 < metrics["results"] <= metrics["instances"] < 118 and "AP" in capsys.readouterr().out


def test_evaluate_command_reports_unreadable_images_and_evaluates_the_rest(data_root, tmp_path, capsys):
    annotations, images = _coco_sample(data_root)
    for image in images.glob("*.jpg"):
        shutil.copy(image, tmp_path)
    (tmp_path / "000000040083.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    code = _evaluate("--round-trip", "--annotations", annotations, "--images", tmp_path, "--workers", "0",
                     "--output", tmp_path / "out")
    printed = capsys.readouterr().out
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert code == 0 and "warning: skipped image 40083" in printed
    assert metrics["message"] == "metrics cover 3 of 4 images: 1 could not be read" and metrics["AP"] >= 0.99


def test_evaluate_command_writes_submission_results_for_image_info_files(data_root, stand_in_onnx, tmp_path,
                                                                         capsys):
    annotations, images = _coco_sample(data_root)
    coco = json.loads(annotations.read_text())
    image_info = tmp_path / "image_info_test-dev2017.json"
    image_info.write_text(json.dumps({key: value for key, value in coco.items() if key != "annotations"}))
    code = _evaluate("--onnx", stand_in_onnx, "--annotations", image_info, "--images", images,
                     "--detections", annotations.parent / "test_coco_det_AP_H_56.json", "--score-threshold", "0.9",
                     "--no-flip", "--workers", "0", "--output", tmp_path / "out")
    assert code == 0 and "results written for submission" in capsys.readouterr().out
    assert (tmp_path / "out" / "person_keypoints_test-dev2017_pooled_results.json").is_file()


def test_evaluate_command_with_no_instances_reports_zero_ap(data_root, stand_in_onnx, tmp_path, capsys):
    annotations, images = _coco_sample(data_root)
    code = _evaluate("--onnx", stand_in_onnx, "--annotations", annotations, "--images", images, "--detections",
                     annotations.parent / "test_coco_det_AP_H_56.json", "--score-threshold", "2", "--workers", "0",
                     "--output", tmp_path / "out")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert code == 0 and metrics["AP"] == 0.0 and metrics["message"] == EMPTY_RESULTS_MESSAGE
    assert metrics["skipped"] == {"below_score_threshold": 118} and "empty result set" in capsys.readouterr().out


def test_evaluate_command_completes_a_posetrack_style_file_and_says_so_once(data_root, tmp_path, capsys, caplog):
    annotations, images = _coco_sample(data_root)
    coco = json.loads(annotations.read_text())
    for annotation in coco["annotations"]:
        del annotation["area"]
    coco["categories"][0]["keypoints"][1:3] = ["head_bottom", "head_top"]  # PoseTrack18's names in COCO format
    posetrack = tmp_path / "posetrack18_val.json"
    posetrack.write_text(json.dumps(coco))
    with caplog.at_level(logging.WARNING, logger="workbench.data.coco"):
        code = _evaluate("--round-trip", "--annotations", posetrack, "--images", images, "--workers", "0",
                         "--output", tmp_path / "out")
    notes = [record.getMessage() for record in caplog.records if record.name == "workbench.data.coco"]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert code == 0 and metrics["AP"] >= 0.99 and metrics["instances"] == 12
    assert len(notes) == 2 and all(len(note.splitlines()) == 1 for note in notes)
    assert "lack area (14 of 14)" in notes[0] and "box width x height, as mmpose does" in notes[0]
    assert "head_bottom for left_eye, head_top for right_eye" in notes[1]
    dataset = CocoKeypoints(posetrack, images)  # the ground truth COCOeval reads carries the box areas
    assert all(a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3]) for a in dataset.coco["annotations"])


@pytest.mark.parametrize("arguments, message", [
    (["--model", "lite_csw_hrnet"], "--model and --checkpoint go together"),
    (["--round-trip", "--detections", "{det}"], "drop --detections"),
    (["--round-trip", "--annotations", "{tmp}/absent.json"], "annotation file not found"),
    (["--round-trip", "--images", "{tmp}"], "4 of 4 images named in test_coco.json are missing"),
    (["--onnx", "{tmp}/absent.onnx"], "ONNX file not found"),
])
def test_evaluate_command_explains_user_errors(data_root, tmp_path, capsys, arguments, message):
    annotations, images = _coco_sample(data_root)
    fill = {"det": annotations.parent / "test_coco_det_AP_H_56.json", "tmp": tmp_path}
    given = [argument.format(**fill) for argument in arguments]
    defaults = ["--annotations", str(annotations), "--images", str(images), "--workers", "0", "--output",
                str(tmp_path / "out")]
    for flag in ("--annotations", "--images"):
        if flag in given:
            at = defaults.index(flag)
            del defaults[at:at + 2]
    assert _evaluate(*given, *defaults) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    (["report", "--annotations", "a.json", "--workers", "0"], "unrecognized arguments: --annotations --workers 0"),
    (["report", "--vis-threshold", "0.5"], "unrecognized arguments: --vis-threshold"),
    (["report", "--enclose-keypoints", "--input-size", "256", "192"],
     "unrecognized arguments: --enclose-keypoints --input-size"),
    (["evaluate", "--round-trip", "--annotations", "a.json", "--images", ".", "--sets", "coco-sample"],
     "unrecognized arguments: --sets coco-sample"),
    (["report", "--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    (["evaluate", "--round-trip", "--threads", "0"], "argument --threads: must be at least 1, got 0"),
    (["evaluate", "--round-trip", "--annotations", "a.json", "--images", ".", "--workers", "-1"],
     "--workers is -1: give a whole number of at least 0."),
    (["evaluate", "--model", "lite_csw_hrnet", "--checkpoint", "absent.pt", "--annotations", "a.json", "--images", ".",
      "--device", "tpu"], "unknown device 'tpu' for --device. Use cpu, cuda, cuda:N or auto."),
    (["report", "--device", "gpu"], "unknown device 'gpu' for --device"),
    (["report", "--model", "lite_csw_hrnet"], "unrecognized arguments: --model"),
    (["compare", "only_one"], "the following arguments are required: SECOND"),
    (["evaluate", "--round-trip", "--annotations", "a.json", "--images", ".", "--manifest"],
     "unrecognized arguments: --manifest"),
    (["evaluate", "--round-trip", "--annotations", "a.json", "--images", ".", "--paired"],
     "unrecognized arguments: --paired"),
    (["evaluate", "--round-trip", "--annotations", "a.json", "--images", ".", "--decode", "best"],
     "unknown decoder 'best' for --decode. Choose one of: standard, dark."),
])
def test_commands_refuse_options_they_do_not_take_or_cannot_use(capsys, arguments, message):
    assert _cli(*arguments) == 2
    assert message in capsys.readouterr().err


def test_the_report_says_whether_the_flip_test_was_used():
    line = {"set": "coco-sample-gt", "boxes": "ground truth", "model": "lite_csw_hrnet", "input": "256x192",
            "decode": "standard"}
    table = pd.DataFrame([{**line, "weights": "w", "parameters": 10, **dict.fromkeys(METRICS, 0.5)},
                          {**line, "weights": ROUND_TRIP, "parameters": None, **dict.fromkeys(METRICS, 1.0)}])
    for flip in (True, False):
        text = markdown_report(table, [], "python -m workbench report", flip)
        assert ("metrics with the flip test" in text) == flip and ("metrics without the flip test" in text) != flip
        assert evaluation_figure(table, flip).axes[0].get_ylabel() == \
            f"COCO keypoint AP ({'flip test' if flip else 'no flip test'}, standard decoding)"


def test_the_report_prints_a_dash_where_a_metric_is_undefined():
    line = {"set": "fashion-pose-val", "boxes": "ground truth", "weights": "w", "model": "lite_csw_hrnet",
            "input": "256x192", "decode": "standard", "parameters": 10}
    table = pd.DataFrame([{**line, **dict.fromkeys(METRICS, 0.5), "APM": float("nan")}])
    row = next(r for r in markdown_report(table, [], "evaluate", True).splitlines() if r.startswith("| fashion"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[-len(METRICS):][METRICS.index("APM")] == "-" and "nan" not in row


def test_report_without_flip_says_so_in_the_report(data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_WEIGHTS", str(tmp_path / "weights"))
    save_weights(untrained("lite_csw_hrnet"), "csw_test", run={"data": "none", "epochs": 0}, metrics={})
    assert _cli("report", "--sets", "coco-sample-gt", "--no-flip", "--batch-size", "16", "--output",
                tmp_path / "report") == 0
    text = (tmp_path / "report" / "evaluation.md").read_text()
    assert "COCO keypoint metrics without the flip test" in text and "with the flip test" not in text
    rows = pd.read_csv(tmp_path / "report" / "evaluation.csv")
    assert rows[["weights", "decode"]].values.tolist() == [["csw_test", "standard"], ["csw_test", "dark"],
                                                           [ROUND_TRIP, "standard"]]
    assert rows["AP"].iloc[-1] == 1.0 and "csw_test" in capsys.readouterr().out


def test_evaluate_command_with_a_checkpoint_in_a_fresh_process(data_root, tmp_path):
    torch.save(build_model("lite_csw_hrnet").state_dict(), tmp_path / "random.pth")
    annotations, images = _coco_sample(data_root)
    finished = subprocess.run(
        [sys.executable, "-m", "workbench", "evaluate", "--model", "lite_csw_hrnet", "--checkpoint",
         str(tmp_path / "random.pth"), "--annotations", str(annotations), "--images", str(images), "--no-flip",
         "--workers", "0", "--threads", "1", "--output", str(tmp_path / "out")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert finished.returncode == 0, finished.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["settings"]["model"] == "lite_csw_hrnet" and metrics["results"] <= 12


# paired comparison

def test_paired_bootstrap_is_zero_for_equal_results_and_sees_a_real_gap(data_root):
    dataset = CocoKeypoints(*_fashion_val(data_root), enclose_keypoints=True, with_targets=True)
    keep_first(dataset, 40)
    exact = coco_results(round_trip(dataset, flip=False), category_id=dataset.category_id)
    generator = np.random.default_rng(0)
    shaken = [{**result, "keypoints": [value + (generator.normal(0.0, 6.0) if index % 3 != 2 else 0.0)
                                       for index, value in enumerate(result["keypoints"])]} for result in exact]
    images = list(dataset.images)
    same = paired_bootstrap(dataset.coco, exact, exact, images, rounds=50)
    assert same.difference == same.low == same.high == 0.0 and same.above_zero == 0.0
    gap = paired_bootstrap(dataset.coco, exact, shaken, images, rounds=200)
    assert gap.ap_first == pytest.approx(evaluate_keypoints(dataset.coco, exact, images)["AP"])
    assert gap.ap_second == pytest.approx(evaluate_keypoints(dataset.coco, shaken, images)["AP"])
    assert 0.0 < gap.low < gap.difference < gap.high and gap.above_zero == 1.0 and gap.images == len(images)


def test_compare_writes_the_comparison_of_two_entries(data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_WEIGHTS", str(tmp_path / "weights"))
    for name, model in (("csw_test", "lite_csw_hrnet"), ("lite18_test", "lite_hrnet_18")):
        save_weights(untrained(model), name, run={"data": "none", "epochs": 0}, metrics={})
    assert _cli("compare", "csw_test", "lite18_test", "--sets", "coco-sample-gt", "--no-flip", "--rounds", "20",
                "--output", tmp_path / "report") == 0
    rows = pd.read_csv(tmp_path / "report" / "paired_csw_test_vs_lite18_test.csv")
    assert rows[["set", "first", "second", "rounds"]].values.tolist() == [["coco-sample-gt", "csw_test",
                                                                             "lite18_test", 20]]
    assert rows["low"].iloc[0] <= rows["difference"].iloc[0] <= rows["high"].iloc[0]
    text = (tmp_path / "report" / "paired_csw_test_vs_lite18_test.md").read_text()
    assert "paired bootstrap over images" in text and "without the flip test" in text and "95% interval" in text
