"""Person detection: YOLOX output decoding on hand-built arrays, letterbox geometry through a hand-built graph,
graph validation, the real shared detector (person AP on coco-sample), and the pinned-file download against a
local HTTP server (127.0.0.1 only)."""
from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from workbench.common.errors import WorkbenchError
from workbench.data.images import read_image
from workbench.detection.download import DETECTOR_ENV, PinnedFile, cache_dir, download_pinned, resolve_detector
from workbench.detection.yolox import SCORE_THRESHOLD, PersonDetector, decode_outputs, grid_cells, letterbox

@pytest.fixture(scope="module")
def detector(detector_path: Path) -> PersonDetector:
    return PersonDetector(detector_path, threads=1)


# --- decoding -----------------------------------------------------------------------------------------------------

def _row(input_size: tuple[int, int], stride: int, column: int, row: int) -> int:
    """The output row of a grid cell, counted by hand: strides 8, 16, 32 in order, cells row-major."""
    height, width = input_size
    before = sum((height // s) * (width // s) for s in (8, 16, 32) if s < stride)
    return before + row * (width // stride) + column


def test_decode_outputs_places_one_box_per_stride() -> None:
    size = (64, 96)
    output = np.zeros((len(grid_cells(size)), 5 + 3))
    assert len(output) == 8 * 12 + 4 * 6 + 2 * 3
    cells = {8: (5, 2), 16: (4, 3), 32: (2, 1)}
    for stride, (column, row) in cells.items():
        output[_row(size, stride, column, row)] = [0.25, 0.75, math.log(2), math.log(3), 0.8, 0.5, 0.1, 0.1]
    boxes, scores = decode_outputs(output, size)
    for stride, (column, row) in cells.items():
        index = _row(size, stride, column, row)
        centre = ((column + 0.25) * stride, (row + 0.75) * stride)
        half = (stride, 1.5 * stride)
        expected = [centre[0] - half[0], centre[1] - half[1], centre[0] + half[0], centre[1] + half[1]]
        np.testing.assert_allclose(boxes[index], expected)
        assert scores[index] == pytest.approx(0.4)


def test_decode_outputs_scores_objectness_times_person_probability() -> None:
    size = (64, 64)
    output = np.zeros((len(grid_cells(size)), 5 + 4))
    person, car = _row(size, 8, 1, 1), _row(size, 16, 2, 2)
    output[person, 4:] = [0.6, 0.5, 0.9, 0.0, 0.0]
    output[car, 4:] = [0.95, 0.02, 0.99, 0.0, 0.0]
    _, scores = decode_outputs(output, size)
    assert scores[person] == pytest.approx(0.3)
    assert scores[car] == pytest.approx(0.019)
    assert np.count_nonzero(scores) == 2
    assert scores.argmax() == person


def test_decode_outputs_recognises_decoded_exports() -> None:
    size = (96, 128)
    cells = grid_cells(size)
    rng = np.random.default_rng(0)
    raw = np.concatenate([rng.uniform(-0.5, 1.5, (len(cells), 2)), rng.uniform(-1, 3, (len(cells), 2)),
                          rng.uniform(0, 1, (len(cells), 2))], axis=1)
    decoded = raw.copy()
    decoded[:, :2] = (raw[:, :2] + cells[:, :2]) * cells[:, 2:]
    decoded[:, 2:4] = np.exp(raw[:, 2:4]) * cells[:, 2:]
    for got, want in zip(decode_outputs(decoded, size), decode_outputs(raw, size)):
        np.testing.assert_allclose(got, want)


# --- hand-built graphs --------------------------------------------------------------------------------------------

def _save_graph(path: Path, nodes: list, input_shape: list, output_shape: list, initializers=()) -> Path:
    graph = helper.make_graph(nodes, "test", [helper.make_tensor_value_info("images", TensorProto.FLOAT, input_shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, output_shape)],
                              list(initializers))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _constant_detector(path: Path, output: np.ndarray, input_size: tuple[int, int]) -> Path:
    """A graph ignoring its (1, 3, H, W) input and always giving `output` (A, 5 + C) as (1, A, 5 + C)."""
    value = numpy_helper.from_array(output[None].astype(np.float32), "value")
    return _save_graph(path, [helper.make_node("Constant", [], ["output"], value=value)],
                       [1, 3, *input_size], list(value.dims))


def test_letterbox_is_bgr_scaled_top_left_on_grey() -> None:
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    image[20:40, 50:90] = (255, 0, 0)
    tensor, ratio = letterbox(image, (416, 416))
    assert tensor.shape == (1, 3, 416, 416) and tensor.dtype == np.float32
    assert ratio == pytest.approx(2.08)
    assert (tensor[0, :, 208:] == 114).all()
    inside = tensor[0, :, round(25 * ratio):round(35 * ratio), round(60 * ratio):round(80 * ratio)]
    assert (inside[2] == 255).all() and (inside[:2] == 0).all()
    assert (tensor[0, :, :round(15 * ratio), :] == 0).all()


def test_detect_maps_input_boxes_back_to_a_non_square_image(tmp_path: Path) -> None:
    size = (64, 64)
    output = np.zeros((len(grid_cells(size)), 6), dtype=np.float32)
    log2 = math.log(2)
    output[_row(size, 8, 3, 1)] = [0.5, 0.25, math.log(4), 0, 0.9, 1.0]      # (12, 6, 44, 14) in the input
    output[_row(size, 8, 7, 1)] = [0.5, 0.0, log2, 0, 0.8, 0.75]             # (52, 4, 68, 12): right edge cut
    output[_row(size, 16, 1, 0)] = [0.75, 0.625, log2, -log2, 0.5, 1.0]      # A again, worse score: NMS drops it
    output[_row(size, 8, 4, 5)] = [0, 0, log2, log2, 0.9, 1.0]               # in the padding: clipped away
    output[_row(size, 32, 1, 0)] = [0.5, 0.5, 0, 0, 0.2, 1.0]                # under the score threshold
    detector = PersonDetector(_constant_detector(tmp_path / "constant.onnx", output, size), threads=1)
    assert detector.input_size == size and detector.input_name == "images"
    found = detector.detect(np.zeros((32, 128, 3), dtype=np.uint8))  # ratio min(64/32, 64/128) = 0.5
    np.testing.assert_allclose(found.boxes, [[24, 12, 64, 16], [104, 8, 24, 16]], atol=1e-4)
    np.testing.assert_allclose(found.scores, [0.9, 0.6], atol=1e-6)
    assert found.boxes.dtype == found.scores.dtype == np.float64
    counts = [len(PersonDetector(detector.path, min_box_size=size).detect(np.zeros((32, 128, 3), np.uint8)))
              for size in (16, 16.5)]
    assert counts == [2, 0]  # both boxes are 16 px tall


def test_graph_with_wrong_output_shape_is_refused(tmp_path: Path) -> None:
    identity = _save_graph(tmp_path / "identity.onnx", [helper.make_node("Identity", ["images"], ["output"])],
                           [1, 3, 416, 416], [1, 3, 416, 416])
    short = _constant_detector(tmp_path / "short.onnx", np.zeros((10, 85)), (416, 416))
    for path in (identity, short):
        with pytest.raises(WorkbenchError) as error:
            PersonDetector(path)
        assert str(path) in str(error.value)
        assert "(1, 3549, 5 + C)" in str(error.value) and "YOLOX ONNX export" in str(error.value)


def test_graph_with_wrong_input_is_refused(tmp_path: Path) -> None:
    dynamic = _save_graph(tmp_path / "dynamic.onnx", [helper.make_node("Identity", ["images"], ["output"])],
                          [1, 3, "height", "width"], [1, 3, "height", "width"])
    with pytest.raises(WorkbenchError, match=r"\(1, 3, height, width\), expected \(1, 3, H, W\) with fixed"):
        PersonDetector(dynamic)


def test_files_that_are_not_onnx_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.onnx"
    text.write_text("these are not the weights you are looking for\n")
    with pytest.raises(WorkbenchError, match="cannot be loaded as an ONNX graph") as error:
        PersonDetector(text)
    assert str(text) in str(error.value) and "YOLOX ONNX export" in str(error.value)
    with pytest.raises(WorkbenchError, match="not found"):
        PersonDetector(tmp_path / "missing.onnx")


def test_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError, match="score_threshold"):
        PersonDetector(tmp_path / "any.onnx", score_threshold=1.5)
    with pytest.raises(WorkbenchError, match="threads"):
        PersonDetector(tmp_path / "any.onnx", threads=0)


# --- the real shared detector -------------------------------------------------------------------------------------

def test_shared_detector_gives_raw_grid_output(detector: PersonDetector, data_root: Path) -> None:
    assert detector.input_size == (416, 416)
    tensor, _ = letterbox(read_image(data_root / "coco-sample" / "000000196141.jpg"), detector.input_size)
    output = detector.session.run(None, {detector.input_name: tensor})[0][0]
    assert output.shape == (3549, 85)
    assert np.abs(output[:, :4]).max() < 8  # offsets and log sizes in cells, not pixels
    assert output[:, 4:].min() >= 0 and output[:, 4:].max() <= 1  # already through a sigmoid
    cells = grid_cells(detector.input_size)
    decoded = np.concatenate([(output[:, :2] + cells[:, :2]) * cells[:, 2:], np.exp(output[:, 2:4]) * cells[:, 2:],
                              output[:, 4:]], axis=1)
    for got, want in zip(decode_outputs(decoded, detector.input_size), decode_outputs(output, detector.input_size)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def test_shared_detector_finds_the_five_people(detector: PersonDetector, data_root: Path) -> None:
    found = detector.detect(read_image(data_root / "coco-sample" / "000000196141.jpg"))
    assert len(found) == 5  # the fifth, partly hidden, scores just under 0.3: hence SCORE_THRESHOLD 0.25
    assert (np.diff(found.scores) <= 0).all() and found.scores.min() >= SCORE_THRESHOLD


def test_shared_detector_person_ap(detector_path: Path, data_root: Path) -> None:
    folder = data_root / "coco-sample"
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(folder / "test_coco.json"))
    detector = PersonDetector(detector_path, score_threshold=0.01, threads=1)
    results = []
    for image in truth.loadImgs(truth.getImgIds()):
        found = detector.detect(read_image(folder / image["file_name"]))
        results += [{"image_id": image["id"], "category_id": 1, "bbox": box.tolist(), "score": float(score)}
                    for box, score in zip(found.boxes, found.scores)]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.params.catIds = [1]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert evaluation.stats[0] >= 0.70  # measured 0.727; an independent script measured 0.725


# --- download and resolution --------------------------------------------------------------------------------------

PAYLOAD = bytes(range(256)) * 40


class _Server(ThreadingHTTPServer):
    routes: dict[str, tuple[int, bytes, int, float]]
    hits: list[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address) -> None:  # a client that gave up: nothing to report
        pass


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        status, body, length, delay = self.server.routes[self.path]
        time.sleep(delay)
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    """A local HTTP server: /good (PAYLOAD), /other (same size, other bytes), /short (half of PAYLOAD under
    PAYLOAD's Content-Length), /error (HTTP 500), /slow (PAYLOAD after 2 s); `hits` records the paths asked for."""
    httpd = _Server(("127.0.0.1", 0), _Handler)
    other = bytes(reversed(PAYLOAD))
    httpd.routes = {"/good": (200, PAYLOAD, len(PAYLOAD), 0), "/other": (200, other, len(other), 0),
                    "/short": (200, PAYLOAD[:len(PAYLOAD) // 2], len(PAYLOAD), 0),
                    "/error": (500, b"boom", 4, 0), "/slow": (200, PAYLOAD, len(PAYLOAD), 2)}
    httpd.hits = []
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user cache under tmp_path, no WORKBENCH_DETECTOR; returns the detectors' folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(DETECTOR_ENV, raising=False)
    return cache_dir()


def _pinned(url: str) -> PinnedFile:
    """PAYLOAD pinned at `url`."""
    return PinnedFile(url=url, size=len(PAYLOAD), sha256=hashlib.sha256(PAYLOAD).hexdigest(), file_name="test.onnx")


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/gone"


def test_download_lands_in_the_cache_once(server: _Server, cache: Path) -> None:
    assert cache == Path(os.environ["XDG_CACHE_HOME"]) / "lite-csw-hrnet-workbench" / "detectors"
    pinned = _pinned(server.url + "/good")
    reports = []
    path = resolve_detector(pinned=pinned, progress=lambda done, total: reports.append((done, total)))
    assert path == cache / "test.onnx" and path.read_bytes() == PAYLOAD
    assert reports[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [entry.name for entry in cache.iterdir()] == ["test.onnx"]
    downloads = server.hits.count("/good")
    assert resolve_detector(pinned=pinned) == path
    assert server.hits.count("/good") == downloads  # the cached file was used


@pytest.mark.parametrize("route, reason", [("/other", "checksum mismatch"), ("/short", "short read"),
                                           ("/error", "HTTP error 500")])
def test_failed_downloads_leave_nothing(server: _Server, cache: Path, route: str, reason: str) -> None:
    pinned = _pinned(server.url + route)
    with pytest.raises(WorkbenchError, match=reason) as error:
        download_pinned(pinned, cache / pinned.file_name, progress=False)
    assert not any(cache.iterdir())
    message = str(error.value)
    assert str(cache / "test.onnx") in message and "--detector PATH" in message and DETECTOR_ENV in message
    assert "drawn, typed or whole-image boxes" in message


def test_offline_download_says_where_to_put_the_file(cache: Path) -> None:
    with pytest.raises(WorkbenchError, match="no connection") as error:
        resolve_detector(pinned=_pinned(_closed_port_url()), progress=False)
    assert str(cache / "test.onnx") in str(error.value) and "--detector PATH" in str(error.value)
    assert not cache.exists() or not any(cache.iterdir())


def test_download_times_out(server: _Server, cache: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(WorkbenchError, match="no connection"):
        resolve_detector(pinned=_pinned(server.url + "/slow"), timeout=0.3, progress=False)
    assert time.perf_counter() - started < 1.5
    assert not any(cache.iterdir())


def test_a_wrong_cached_file_is_replaced(server: _Server, cache: Path) -> None:
    cache.mkdir(parents=True)
    (cache / "test.onnx").write_bytes(b"x" * len(PAYLOAD))
    with pytest.raises(WorkbenchError, match="does not match and is ignored"):
        resolve_detector(pinned=_pinned(server.url + "/good"), download=False)
    assert resolve_detector(pinned=_pinned(server.url + "/good"), progress=False).read_bytes() == PAYLOAD


def test_explicit_path_beats_environment_beats_cache(cache: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pinned = _pinned(_closed_port_url())
    cache.mkdir(parents=True)
    (cache / pinned.file_name).write_bytes(PAYLOAD)
    explicit, named = tmp_path / "explicit.onnx", tmp_path / "named.onnx"
    explicit.write_bytes(b"1")
    named.write_bytes(b"2")
    assert resolve_detector(pinned=pinned) == cache / pinned.file_name
    monkeypatch.setenv(DETECTOR_ENV, str(named))
    assert resolve_detector(pinned=pinned) == named
    assert resolve_detector(explicit, pinned=pinned) == explicit
    with pytest.raises(WorkbenchError, match="is not a file") as error:
        resolve_detector(tmp_path / "missing.onnx", pinned=pinned)
    assert "missing.onnx" in str(error.value)
    monkeypatch.setenv(DETECTOR_ENV, str(tmp_path / "gone.onnx"))
    with pytest.raises(WorkbenchError, match=f"named by {DETECTOR_ENV} is not a file"):
        resolve_detector(pinned=pinned)


def test_without_download_a_missing_file_says_how_to_get_it(cache: Path) -> None:
    with pytest.raises(WorkbenchError, match="downloading is off") as error:
        resolve_detector(pinned=_pinned(_closed_port_url()), download=False)
    assert str(cache / "test.onnx") in str(error.value) and DETECTOR_ENV in str(error.value)
