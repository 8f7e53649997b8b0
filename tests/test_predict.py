"""Prediction on the photos and videos people bring: every person of an image, ids across video frames, the drawn
outputs and JSON of `python -m workbench predict`, and its messages for bad input."""
from __future__ import annotations

import json
import re
import subprocess
import sys


import cv2
import numpy as np
import pytest

from workbench.cli import main
from workbench.data.images import read_image
from workbench.inference import PoseEstimate
from workbench.prediction.api import Predictor, PredictOptions, _predictor, predict
from workbench.prediction.people import Person
from workbench.prediction.render import draw_people
from workbench.prediction.tracking import Tracker, box_iou
from workbench.prediction.video import VideoWriter, read_frames, video_info

FIVE_PEOPLE = "000000196141.jpg"


def _person(box) -> Person:
    estimate = PoseEstimate(np.zeros((17, 2)), np.ones(17), np.zeros((17, 4, 3)), np.zeros((8, 6, 3), np.uint8),
                            np.zeros((2, 3)), np.asarray(box, dtype=np.float64))
    return Person(estimate, 1.0, 1.0)


@pytest.fixture(scope="module")
def predictor(detector_path) -> Predictor:
    return Predictor.load(detector=detector_path, options=PredictOptions(flip=False))


def test_box_iou_of_known_boxes():
    np.testing.assert_allclose(box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]]),
                               [[1.0, 50 / 150, 0.0]])


def test_tracker_keeps_ids_gives_new_ones_and_never_reuses():
    tracker = Tracker()
    first = tracker.update([_person([0, 0, 10, 20]), _person([100, 0, 10, 20])])
    assert [p.track_id for p in first] == [0, 1]
    second = tracker.update([_person([102, 1, 10, 20]), _person([300, 0, 10, 20]), _person([1, 0, 10, 20])])
    assert [p.track_id for p in second] == [1, 2, 0]
    third = tracker.update([_person([301, 0, 10, 20])])
    assert [p.track_id for p in third] == [2]
    assert [p.track_id for p in tracker.update([_person([0, 0, 10, 20])])] == [3]


def test_every_person_of_a_crowded_photo(predictor, data_root):
    pixels = read_image(data_root / "coco-sample" / FIVE_PEOPLE)
    people = predictor.people(pixels)
    assert len(people) >= 4
    height, width = pixels.shape[:2]
    for person in people:
        assert person.keypoints.shape == (17, 2) and person.keypoint_scores.shape == (17,)
        assert (person.keypoints >= -0.5).all() and (person.keypoints[:, 0] <= width).all() \
            and (person.keypoints[:, 1] <= height).all()
    assert [p.score for p in people] == sorted((p.score for p in people), reverse=True)
    drawn = draw_people(pixels, people)
    assert drawn.shape == pixels.shape and (drawn != pixels).any()


def test_predict_api_on_paths_arrays_and_lists(detector_path, data_root):
    image = data_root / "coco-sample" / FIVE_PEOPLE
    options = PredictOptions(flip=False)
    one = predict(image, detector=detector_path, options=options)
    assert isinstance(one, list) and all(isinstance(p, Person) for p in one) and len(one) >= 4
    several = predict([image, str(image)], detector=detector_path, options=options)
    assert _predictor.cache_info().hits >= 1  # the second call with the same settings reuses the loaded networks
    assert len(several) == 2 and [len(p) for p in several] == [len(one)] * 2
    whole = predict(np.full((64, 48, 3), 128, np.uint8), detector=False, options=options)
    assert len(whole) == 1 and np.array_equal(whole[0].box, [0, 0, 48, 64])


def test_an_image_without_people_gives_none(predictor):
    assert predictor.people(np.full((240, 320, 3), 90, np.uint8)) == []


def test_street_video_ids_follow_the_walkers(predictor, data_root):
    frames = list(predictor.frames(read_frames(data_root / "video" / "street.mp4")))
    assert len(frames) == video_info(data_root / "video" / "street.mp4").frames == 5
    assert all(len(people) >= 5 for people in frames)
    followed = 0
    for before, after in zip(frames, frames[1:]):
        large = [p for p in before if p.box[3] >= 150]
        for person in large:
            overlaps = box_iou([person.box], [q.box for q in after])[0]
            if overlaps.max() >= 0.6:
                followed += 1
                assert after[int(overlaps.argmax())].track_id == person.track_id
    assert followed >= 8  # the clearly visible walkers, frame after frame


def test_predict_command_writes_pictures_video_and_json(detector_path, data_root, tmp_path):
    street = data_root / "video" / "street.mp4"
    code = subprocess.run([sys.executable, "-m", "workbench", "predict", str(data_root / "coco-sample" / FIVE_PEOPLE),
                           str(street), "--output", str(tmp_path), "--detector", str(detector_path), "--no-flip",
                           "--threads", "2"], capture_output=True, text=True)
    assert code.returncode == 0, code.stderr
    records = json.loads((tmp_path / "keypoints.json").read_text())
    assert len(records) >= 4 and all(len(r["keypoints"]) == 51 and r["file_name"] == FIVE_PEOPLE for r in records)
    assert (tmp_path / "000000196141.jpg").stat().st_size > 0
    video_records = json.loads((tmp_path / "street.json").read_text())
    assert sorted({r["frame"] for r in video_records}) == [0, 1, 2, 3, 4]
    assert all({"track_id", "time", "bbox", "score"} <= r.keys() for r in video_records)
    assert video_info(tmp_path / "street.mp4").frames == video_info(street).frames
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("make, message", [
    (lambda folder, data: (folder / "notes.mp4").write_text("not a video"), "not a readable video"),
    (lambda folder, data: (folder / "cut.mp4").write_bytes((data / "video" / "street.mp4").read_bytes()[:2000]),
     "not a readable video|no decodable frame"),
    (lambda folder, data: (folder / "missing.mp4"), "input not found"),
])
def test_bad_videos_end_in_one_line_and_leave_nothing(make, message, data_root, detector_path, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    make(inputs, data_root)
    target = next(inputs.iterdir(), inputs / "missing.mp4")
    output = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(target), "--output", str(output), "--detector", str(detector_path), "--no-flip"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "Traceback" not in error
    assert re.search(message, error), error
    assert not output.exists() or not list(output.iterdir())


def test_a_detector_that_is_not_yolox_is_refused(stand_in_onnx, data_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(data_root / "coco-sample" / FIVE_PEOPLE), "--output", str(tmp_path),
              "--detector", str(stand_in_onnx)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "pooled.onnx" in error


def test_video_writer_leaves_nothing_when_interrupted(tmp_path):
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "out.mp4", 5.0, (64, 48)) as writer:
            writer.write(np.zeros((48, 64, 3), np.uint8))
            raise RuntimeError("stopped")
    assert list(tmp_path.iterdir()) == []


def test_evaluate_with_a_detector_runs_end_to_end(detector_path, data_root, tmp_path):
    sample = data_root / "coco-sample"
    done = subprocess.run([sys.executable, "-m", "workbench", "evaluate", "--model", "lite_csw_hrnet", "--checkpoint",
                           "lite_csw_hrnet_256x192_fashion", "--annotations", str(sample / "test_coco.json"),
                           "--images", str(sample), "--detector", str(detector_path), "--output", str(tmp_path),
                           "--no-flip", "--workers", "0", "--threads", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    detections = json.loads((tmp_path / "detections.json").read_text())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(detections) >= 12 and {d["category_id"] for d in detections} == {1}
    assert metrics["results"] > 0 and 0.0 <= metrics["AP"] <= 1.0
    assert metrics["settings"]["detector"].endswith("yolox_nano_coco.onnx")


def test_an_image_without_people_is_noted_and_written(detector_path, tmp_path, capsys):
    flat = tmp_path / "wall.png"
    cv2.imwrite(str(flat), np.full((240, 320, 3), 90, np.uint8))
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(flat), "--output", str(tmp_path / "out"), "--detector", str(detector_path),
              "--no-flip"])
    assert exit_info.value.code == 0
    assert "no person found in wall.png" in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "keypoints.json").read_text()) == []
    assert (tmp_path / "out" / "wall.jpg").is_file()


def test_the_python_api_is_one_import():
    import workbench

    assert workbench.predict is predict
