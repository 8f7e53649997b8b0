"""From a finished training run to the weights manifest (`weights publish`) and the evaluation report
(`report`), on a real tiny run over fashion-pose photos; the README's numbers against the shipped weights."""
from __future__ import annotations

import csv
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch

from workbench.cli import main
from workbench.common.errors import WorkbenchError
from workbench.common.paths import REPO_ROOT
from workbench.training.config import flatten
from workbench.training.loop import OPTIMIZER
from workbench.training.publishing import publish_run, training_command
from workbench.training import distributed, load_config, train
from workbench.training.checkpointing import load_checkpoint, save_checkpoint
from workbench.zoo.loader import load
from workbench.zoo.manifest import read_manifest, verified_path

TINY = ["model.input_size=[64,64]", "data.subset=32", "validation.subset=16", "train.batch_size=8", "train.epochs=2",
        "train.warmup_iters=2", "validation.every=2", "train.threads=1", "data.workers=0", "output.progress=false"]
"""2 epochs x 4 steps at 64x64 on 32 fashion-pose photos: the mechanics of publishing, not accuracy."""


@pytest.fixture(scope="module")
def finished_run(data_root, tmp_path_factory) -> Path:
    config = load_config("lite_csw_hrnet_256x192_fashion", [*TINY, f"data.root={data_root}"])
    output = tmp_path_factory.mktemp("publish") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train(config, output).epochs_done == 2
    finally:
        torch.set_num_threads(threads)
    return output


@pytest.fixture()
def weights_folder(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "weights"
    monkeypatch.setenv("WORKBENCH_WEIGHTS", str(folder))
    monkeypatch.setenv("WORKBENCH_REPORTS", str(tmp_path / "reports"))
    return folder


def test_publishing_records_the_run_and_stores_half_precision_weights_that_load(finished_run, weights_folder, capsys):
    main_code = _cli(["weights", "publish", str(finished_run), "--name", "tiny_csw", "--threads", "1"])
    assert main_code == 0 and "published 'tiny_csw'" in capsys.readouterr().out
    (entry,) = read_manifest(weights_folder)
    assert (entry.name, entry.model, entry.input_size) == ("tiny_csw", "lite_csw_hrnet", (64, 64))
    assert verified_path(entry) == weights_folder / "tiny_csw.pt"
    run = entry.run
    assert run["epochs"] == 2 and run["steps"] == 8 and run["checkpoint"] == "last.pt"
    assert run["schedule"]["optimizer"] == "Adam" and run["schedule"]["batch_size"] == 8
    assert run["data"]["train"] == "fashion-pose/person_keypoints_train.json" and run["initialisation"] == "from scratch"
    assert run["training_seconds"] > 0 and run["config"]["data"]["subset"] == 32
    assert run["hardware"] == {distributed.setup().hardware(): 2}
    assert run["command"].startswith("python -m workbench train --config lite_csw_hrnet_256x192_fashion --set ")
    assert "train.epochs=2" in run["command"] and "'model.input_size=[64,64]'" in run["command"]
    assert "data.root" not in run["command"]
    assert run["stored_as"] == "float16" and abs(run["val_AP_float16"] - run["val_AP_float32"]) <= 1e-3
    assert entry.metrics["val_AP"] == pytest.approx(run["val_AP_float16"])
    assert (weights_folder / run["log"]).read_text() == (finished_run / "log.jsonl").read_text()
    assert (weights_folder / run["curves"]).read_bytes()[:4] == b"\x89PNG"
    stored = torch.load(weights_folder / entry.file, weights_only=True)
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    trained = load_checkpoint(finished_run / "last.pt")["model"]
    loaded = load(None, "tiny_csw").state_dict()
    assert all(torch.allclose(loaded[k], v.float(), rtol=1e-3, atol=1e-4) for k, v in trained.items()
               if v.is_floating_point())
    assert _cli(["weights", "list"]) == 0 and "tiny_csw" in capsys.readouterr().out


def test_an_unfinished_run_is_refused(finished_run, tmp_path):
    state = load_checkpoint(finished_run / "last.pt")
    state["epoch"] = 1
    unfinished = tmp_path / "unfinished"
    save_checkpoint({k: v for k, v in state.items() if k != "format"}, unfinished / "last.pt")
    with pytest.raises(WorkbenchError, match=r"has done 1 of its 2 epochs: finish it with .*--resume"):
        publish_run(unfinished, directory=tmp_path / "weights")


def test_an_earlier_checkpoint_of_a_finished_run_can_be_published(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    state = load_checkpoint(run / "last.pt")
    state["epoch"] = 1
    save_checkpoint({k: v for k, v in state.items() if k != "format"}, run / "best.pt")
    entry, ap = publish_run(run, "tiny_best", checkpoint="best.pt", directory=tmp_path / "weights", progress=False)
    assert entry.run["checkpoint"] == "best.pt" and set(ap) == {"float32", "float16"}


def test_the_evaluation_report_covers_every_entry_and_set(finished_run, weights_folder, capsys):
    publish_run(finished_run, "tiny_csw", progress=False)
    assert _cli(["report", "--batch-size", "16", "--threads", "1"]) == 0
    reports = weights_folder.parent / "reports"
    rows = list(csv.DictReader((reports / "evaluation.csv").open()))
    trained = {row["set"]: row for row in rows if row["weights"] == "tiny_csw" and row["decode"] == "standard"}
    assert sorted(row["decode"] for row in rows if row["weights"] == "tiny_csw") == ["dark"] * 4 + ["standard"] * 4
    ceilings = {row["set"]: float(row["AP"]) for row in rows if row["weights"].startswith("round trip")}
    assert set(trained) == {"fashion-pose-val-annotated", "fashion-pose-val", "coco-sample-gt", "coco-sample"}
    assert set(ceilings) == {"fashion-pose-val-annotated", "fashion-pose-val", "coco-sample-gt"}
    assert ceilings["fashion-pose-val"] > 0.99 and ceilings["coco-sample-gt"] > 0.95
    assert all(0.0 <= float(row["AP"]) <= 1.0 for row in trained.values())
    assert trained["coco-sample"]["boxes"].startswith("detections")
    assert {row["set"]: row["images"] for row in rows} == {"fashion-pose-val-annotated": "100",
                                                           "fashion-pose-val": "100", "coco-sample-gt": "4",
                                                           "coco-sample": "4"}
    text = (reports / "evaluation.md").read_text()
    assert "`python -m workbench report --batch-size 16 --threads 1`" in text and "tiny_csw" in text
    assert "coco-sample-gt has 4 images; coco-sample has 4 images: read their APs as an illustration" in text
    for picture in ("evaluation.png", "training_curves.png"):
        assert (reports / picture).read_bytes()[:4] == b"\x89PNG"


def test_the_report_without_weights_says_how_to_get_them(weights_folder, capsys):
    assert _cli(["report"]) == 2
    assert "no entries yet" in capsys.readouterr().err
    assert _cli(["evaluate", "--model", "lite_csw_hrnet"]) == 2
    assert "the following arguments are required: --annotations, --images" in capsys.readouterr().err


def _cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    return exit_.value.code



# The project's own weights: run records that still reproduce, and the README's numbers read from the records

SHIPPED = read_manifest(REPO_ROOT / "weights")


def test_the_shipped_run_records_still_name_commands_that_give_their_configs():
    assert len(SHIPPED) == 4
    for entry in SHIPPED:
        run = entry.run
        assert training_command(run["config"]) == run["command"] and run["schedule"]["optimizer"] == OPTIMIZER.__name__
        words = shlex.split(run["command"])
        overrides = words[words.index("--set") + 1:] if "--set" in words else []
        again = flatten(load_config(words[words.index("--config") + 1], overrides))
        recorded = flatten(run["config"])
        assert {k: v for k, v in again.items() if k != "data.root"} == \
               {k: v for k, v in recorded.items() if k != "data.root"}, entry.name


def _readme_section(title: str) -> str:
    text = (REPO_ROOT / "README.md").read_text()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_trained_weights_are_those_of_the_manifest_and_the_reports(data_root):
    section = _readme_section("Trained weights")
    prose = " ".join(section.split())
    rows = {name: (int(params.replace(",", "")), ap) for name, params, ap
            in re.findall(r"^\| `(\w+)` \| ([\d,]+) \| (\d\.\d{3}) \|$", section, re.MULTILINE)}
    assert set(rows) == {entry.name for entry in SHIPPED}
    with (REPO_ROOT / "reports" / "evaluation.csv").open() as table:
        report = {(r["weights"], r["set"], r["decode"]): r for r in csv.DictReader(table)}
    for entry in SHIPPED:
        params, ap = rows[entry.name]
        measured = report[(entry.name, "fashion-pose-val", "standard")]
        assert ap == f"{entry.metrics['val_AP']:.3f}" == f"{float(measured['AP']):.3f}", entry.name
        assert params == int(float(measured["parameters"])), entry.name
        run, schedule = entry.run, entry.run["schedule"]
        photos = len(json.loads((data_root / run["data"]["train"]).read_text())["images"])
        lr = f"{schedule['lr']:.0e}".replace("e-0", "e-")
        recipe = (f"{run['epochs']} epochs on the {photos} fashion-pose training photos, "
                  f"batch {schedule['batch_size']}, {schedule['optimizer']} {lr} dropped at epochs {' and '.join(map(str, schedule['milestones']))}, "
                  f"{run['initialisation']}, seed {run['seed']}")
        assert recipe in prose, (entry.name, recipe)
    paired = Path("reports") / "paired_lite_csw_hrnet_256x192_fashion_vs_lite_hrnet_18_256x192_fashion"
    assert f"`{paired}.md`" in prose and (REPO_ROOT / paired).with_suffix(".md").is_file()
    with (REPO_ROOT / paired).with_suffix(".csv").open() as table:
        line = next(r for r in csv.DictReader(table) if r["set"] == "fashion-pose-val")
    difference, low, high = (float(line[k]) for k in ("difference", "low", "high"))
    assert f"the difference, {difference:+.3f} AP, lies inside the 95% paired bootstrap interval " \
           f"[{low:+.3f}, {high:+.3f}]" in prose and low <= 0 <= high
    assert f"on the {line['images']} fashion-pose val photos" in prose
