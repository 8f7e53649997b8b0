"""The one loader's bad-file matrix: every file that is not a checkpoint of the model ends in one line naming the file,
what is wrong and the fix; exit code 2 on the command line, a WorkbenchError in the app's model cache. Never a
traceback, a temporary path or PyTorch's advice about weights_only, and a pickle that would run code never runs."""
from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from model import build_model
from workbench.cli import main
from workbench.common.errors import WorkbenchError
from workbench.common.paths import REPO_ROOT
from workbench.zoo.cache import CHECKPOINT, ModelCache

MARKER = "code_ran.txt"
"""The file the malicious pickles would create, beside them, if they were ever unpickled."""


class RunsCode:
    """Pickles as a call to os.system: unpickling it would create MARKER."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def _tiny_onnx(path: Path, height: int, width: int) -> Path:
    """A one-node ONNX graph (average pool) of fixed input size 1 x 3 x height x width."""
    graph = helper.make_graph(
        [helper.make_node("AveragePool", ["image"], ["heatmaps"], kernel_shape=[4, 4], strides=[4, 4])], "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [1, 3, height // 4, width // 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, data_root) -> dict[str, Path]:
    """Name of the case -> a file that is not a checkpoint of lite_csw_hrnet nor of small_hrnet_w16."""
    folder = tmp_path_factory.mktemp("bad_files")
    files = {"text": folder / "notes.pt", "empty": folder / "empty.pth", "truncated": folder / "truncated.pt",
             "truncated old format": folder / "truncated_legacy.pt",
             "jpeg": folder / "photo.jpg", "code": folder / "runs_code.pt", "raw code": folder / "runs_code.pkl",
             "other model": folder / "lite_hrnet_18.pt", "onnx": folder / "small_128x96.onnx",
             "missing": folder / "absent.pt"}
    files["text"].write_text("epoch 3, loss 0.0012\n")
    files["empty"].write_bytes(b"")
    whole = io.BytesIO()
    torch.save(build_model("lite_csw_hrnet").state_dict(), whole)
    files["truncated"].write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    legacy = io.BytesIO()
    torch.save(build_model("lite_csw_hrnet").state_dict(), legacy, _use_new_zipfile_serialization=False)
    files["truncated old format"].write_bytes(legacy.getvalue()[:200])  # cut inside its pickle
    shutil.copy(data_root / "coco-sample" / "000000000785.jpg", files["jpeg"])
    torch.save({"model": RunsCode(folder / MARKER)}, files["code"])
    files["raw code"].write_bytes(pickle.dumps(RunsCode(folder / MARKER), protocol=4))
    torch.save(build_model("lite_hrnet_18").state_dict(), files["other model"])
    _tiny_onnx(files["onnx"], 128, 96)
    return files


CASES = {
    "text": ("--checkpoint", "text", "it is a text file"),
    "empty": ("--checkpoint", "empty", "it is an empty file"),
    "truncated": ("--checkpoint", "truncated", "truncated or damaged"),
    "truncated old format": ("--checkpoint", "truncated old format", "truncated or damaged"),
    "jpeg": ("--checkpoint", "jpeg", "it is a JPEG image"),
    "code": ("--checkpoint", "code", "would run code"),
    "raw code": ("--checkpoint", "raw code", "would run code"),
    "other model": ("--checkpoint", "other model", "missing keys"),
    "onnx of the wrong input size": ("--onnx", "onnx", "takes 128x96 input, not 256x192"),
    "onnx as checkpoint": ("--checkpoint", "onnx", "is an ONNX graph, not a PyTorch checkpoint: pass it as --onnx"),
    "missing": ("--checkpoint", "missing", "not found"),
}
"""Case -> (the option that names the file, the file of `bad_files`, what the message says)."""


def _arguments(case: str, bad_files: dict[str, Path], data_root: Path, output: Path) -> list[str]:
    option, key, _ = CASES[case]
    model = ["--input-size", "256", "192"] if option == "--onnx" else ["--model", "lite_csw_hrnet"]
    return ["evaluate", *model, option, str(bad_files[key]), "--annotations",
            str(data_root / "coco-sample" / "test_coco.json"), "--images", str(data_root / "coco-sample"),
            "--workers", "0", "--output", str(output)]


def _check_one_line(message: str, file: Path) -> None:
    lines = message.strip().splitlines()
    assert len(lines) == 1, message
    assert "Traceback" not in message and "weights_only" not in message
    assert str(file.parent) not in message and file.name in message


@pytest.mark.parametrize("case", CASES)
def test_the_command_line_ends_a_bad_file_in_one_line(case, bad_files, data_root, tmp_path, capsys):
    _, key, expected = CASES[case]
    with pytest.raises(SystemExit) as exited:
        main(_arguments(case, bad_files, data_root, tmp_path / "out"))
    message = capsys.readouterr().err
    assert exited.value.code == 2 and message.startswith("error: ") and expected in message
    _check_one_line(message, bad_files[key])
    assert not (bad_files[key].parent / MARKER).exists() and not (tmp_path / "out").exists()


def test_a_raw_pickle_that_would_run_code_does_not_run_in_a_fresh_process(bad_files, data_root, tmp_path):
    command = [sys.executable, "-m", "workbench", *_arguments("raw code", bad_files, data_root, tmp_path), "--threads",
               "1"]
    finished = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert finished.returncode == 2 and "would run code" in finished.stderr
    _check_one_line(finished.stderr, bad_files["raw code"])
    assert not (bad_files["raw code"].parent / MARKER).exists()


@pytest.mark.parametrize("case", [case for case in CASES if case != "onnx as checkpoint"])
def test_the_app_model_cache_refuses_a_bad_file_in_one_line(case, bad_files):
    """The app's path (an uploaded file as the checkpoint of small_hrnet_w16 at 256x192); an ONNX file of that size
    would load, so only the wrong size is a bad file here."""
    _, key, expected = CASES[case]
    with pytest.raises(WorkbenchError) as refused:
        ModelCache(torch.device("cpu")).get("small_hrnet_w16", CHECKPOINT, bad_files[key])
    _check_one_line(str(refused.value), bad_files[key])
    assert expected in str(refused.value) and not (bad_files[key].parent / MARKER).exists()
