"""Training: configs and overrides, the loss, the schedule, the sampler; a real short run on fashion-pose photos;
resume after SIGTERM equals an uninterrupted run; a 2-process gloo run; refusal of corrupt or mismatched
checkpoints; the stop on a non-finite loss."""
from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import torch
import yaml

from model import build_model, model_names
from workbench.zoo.loader import load
from workbench.cli import main
from workbench.data.dataset import CocoKeypoints
from workbench.common.errors import WorkbenchError
from workbench.common.paths import REPO_ROOT
from workbench.training import build_config, config_names, load_config, read_log, train
from workbench.data.transforms import Augmentation
from workbench.training.checkpointing import load_checkpoint
from workbench.training.config import CONFIG_DIR, OPTIONAL, SETTINGS, changed_settings, flatten
from workbench.training.data import ResumableSampler
from workbench.training.loss import JointsMSELoss
from workbench.training.schedule import lr_factor

FASHION = "lite_csw_hrnet_256x192_fashion"
TINY = ["model.input_size=[64,64]", "data.subset=48", "validation.subset=8", "train.batch_size=8", "train.epochs=3",
        "train.warmup_iters=4", "validation.every=2", "train.threads=1", "data.workers=0", "output.progress=false"]
"""A run of 3 epochs x 6 steps at 64x64 on 48 fashion-pose photos: mechanics, not accuracy."""


def _tiny(data_root: Path, *more: str) -> list[str]:
    return [*TINY, f"data.root={data_root}", *more]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread (much faster than two on a busy 2-core machine), as the tiny runs do."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _run_cli(args: list[str], **options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "workbench", "train", *args], cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **options)


@pytest.fixture(scope="module")
def tiny_run(data_root, tmp_path_factory) -> tuple[dict, Path]:
    """The config and output folder of an uninterrupted tiny run."""
    config = load_config(FASHION, _tiny(data_root))
    output = tmp_path_factory.mktemp("tiny") / "run"
    result = train(config, output)
    assert (result.epochs_done, result.step, result.stopped_by) == (3, 18, None)
    return config, output


# configs

def test_every_shipped_config_loads_and_follows_its_recipe():
    names = config_names()
    assert {f"{m}_{s}_coco" for m in ("lite_csw_hrnet", "lite_hrnet_18", "mobilenetv2", "shufflenetv2")
            for s in ("256x192", "384x288")} <= set(names)
    for name in names:
        config = load_config(name)
        model, data, train_ = config["model"], config["data"], config["train"]
        height, width = model["input_size"]
        assert config["name"] == name and model["name"] in model_names() and f"_{height}x{width}_" in name
        assert data["sigma"] == 2.0 * height / 256 and train_["warmup_ratio"] == 0.001 and train_["gamma"] == 0.1
        if name.endswith("_coco"):
            assert (train_["epochs"], train_["milestones"], train_["warmup_iters"]) == (210, [170, 200], 500)
            assert train_["batch_size"] == (64 if height == 256 else 32)
            pretrained = model["name"] in ("mobilenetv2", "shufflenetv2", "resnet50", "resnet152", "hrnet_w32")
            assert train_["lr"] == (5e-4 if pretrained else 2e-3)
        else:  # the short fashion-pose schedule keeps the recipe's shape
            assert train_["lr"] == 2e-3 and data["train_annotations"].startswith("fashion-pose/")
            assert [m / train_["epochs"] for m in train_["milestones"]] == pytest.approx([170 / 210, 200 / 210],
                                                                                      abs=0.02)
    paper = load_config("lite_csw_hrnet_256x192_coco")["data"]["augmentation"]
    assert (paper["rotation_limit"], paper["scale_factor"], paper["flip_prob"]) == (30.0, 0.25, 0.5)


def test_overrides_are_typed_and_unknown_or_wrong_settings_are_refused():
    config = load_config(FASHION, ["train.epochs=5", "train.lr=1e-3", "model.input_size=[128, 96]",
                                   "model.options.spatial_kernel=5", "data.root=/datasets"])
    assert config["train"]["epochs"] == 5 and config["train"]["lr"] == 1e-3
    assert config["model"]["input_size"] == [128, 96] and config["model"]["options"] == {"spatial_kernel": 5}
    assert config["data"]["root"] == "/datasets"
    with pytest.raises(WorkbenchError, match=r"unknown setting train\.lrr.*train\.lr"):
        load_config(FASHION, ["train.lrr=1"])
    with pytest.raises(WorkbenchError, match="train.epochs .* must be int"):
        load_config(FASHION, ["train.epochs=many"])
    with pytest.raises(WorkbenchError, match="multiples of 32"):
        load_config(FASHION, ["model.input_size=[100,96]"])
    with pytest.raises(WorkbenchError, match="not of the form"):
        load_config(FASHION, ["train.epochs"])
    with pytest.raises(WorkbenchError, match="config not found: no_such_config.*lite_csw_hrnet_256x192_coco"):
        load_config("no_such_config")


# What every shipped config resolved to when each was a complete file (before `base:`), setting by setting: the
# defaults of SETTINGS, then its input size, then the recipe of its model (COCO) or the fashion-pose schedule.
RECIPES = {
    "paper": {},  # Lite CSW-HRNet: the defaults are its recipe
    "official": {"data.augmentation.rotation_limit": 60.0},  # Lite-HRNet's configs
    "mmpose": {"train.lr": 5e-4, "data.augmentation.scale_factor": 0.5, "data.augmentation.rotation_factor": 40.0,
               "data.augmentation.rotation_limit": 80.0},
}
RECIPE_OF = {"lite_csw_hrnet": "paper", "lite_hrnet_18": "official", "lite_hrnet_30": "official",
             "small_hrnet_w16": "official", "resnet50": "mmpose", "resnet152": "mmpose", "mobilenetv2": "mmpose",
             "shufflenetv2": "mmpose", "hrnet_w32": "mmpose"}
SIZES = {"256x192": {"data.sigma": 2.0}, "384x288": {"model.input_size": [384, 288], "data.sigma": 3.0,
                                                     "train.batch_size": 32}}
FASHION_SCHEDULE = {
    "data.train_annotations": "fashion-pose/person_keypoints_train.json", "data.train_images": "fashion-pose/images",
    "data.val_annotations": "fashion-pose/person_keypoints_val.json", "data.val_images": "fashion-pose/images",
    "data.enclose_keypoints": True, "data.workers": 2, "train.epochs": 80, "train.batch_size": 32,
    "train.warmup_iters": 50, "train.milestones": [64, 76], "train.channels_last": True, "train.threads": 1,
    "validation.every": 5, "output.log_every": 5}


def _resolved_before_bases(name: str) -> dict:
    model, size, data = re.fullmatch(r"(.+)_(\d+x\d+)_(coco|fashion)", name).groups()
    flat = {setting: default for setting, (_, default) in SETTINGS.items() if setting not in OPTIONAL}
    flat.update({"name": name, "model.name": model, **SIZES[size]})
    flat.update(FASHION_SCHEDULE if data == "fashion" else RECIPES[RECIPE_OF[model]])
    return flat


def test_configs_with_a_base_resolve_to_what_their_complete_files_gave():
    assert len(config_names()) == 22
    for name in config_names():
        assert flatten(load_config(name)) == _resolved_before_bases(name), name


def test_a_config_with_a_base_holds_only_what_differs_from_it():
    bases = set()
    for name in config_names():
        written = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
        if "base" not in written:
            continue
        base = written.pop("base")
        bases.add(base)
        differing = {line.split(":")[0] for line in changed_settings(load_config(base), load_config(name))}
        assert set(flatten(written)) == differing, name  # every line changes something, and nothing else changes
    assert bases == {"lite_csw_hrnet_256x192_coco", "resnet50_256x192_coco", FASHION}
    assert not any("base" in yaml.safe_load((CONFIG_DIR / f"{base}.yaml").read_text()) for base in bases)
    others = [name for name in config_names() if name.endswith("_fashion") and name != FASHION]
    assert len(others) == 3
    for name in others:  # the fashion-pose configs differ in the network only
        model = name.removesuffix("_256x192_fashion")
        assert changed_settings(load_config(FASHION), load_config(name)) == [
            f"model.name: 'lite_csw_hrnet' -> '{model}'", f"name: '{FASHION}' -> '{name}'"]


def test_a_base_is_found_beside_the_config_or_shipped_and_goes_one_level_deep(tmp_path):
    (tmp_path / "mine.yaml").write_text(f"base: {FASHION}\nmodel:\n  options: {{spatial_kernel: 5}}\n")
    (tmp_path / "tuned.yaml").write_text("base: mine.yaml\ntrain:\n  epochs: 3\n")
    (tmp_path / "plain.yaml").write_text("model:\n  name: lite_hrnet_18\n  options: {}\n")
    (tmp_path / "on_plain.yaml").write_text("base: plain\ntrain:\n  epochs: 3\n")
    mine = load_config(tmp_path / "mine.yaml", ["train.epochs=2"])
    assert mine["name"] == "mine" and mine["model"]["options"] == {"spatial_kernel": 5}
    assert changed_settings(load_config(FASHION), mine) == ["model.options: {} -> {'spatial_kernel': 5}",
                                                          f"name: '{FASHION}' -> 'mine'", "train.epochs: 80 -> 2"]
    on_plain = load_config(tmp_path / "on_plain.yaml")
    assert on_plain["model"]["name"] == "lite_hrnet_18" and on_plain["train"]["epochs"] == 3
    assert "base" not in on_plain and on_plain["name"] == "on_plain"
    with pytest.raises(WorkbenchError, match=r"tuned.yaml: its base .*mine.yaml has a base of its own "
                                             rf"\('{FASHION}'\); bases go one level deep"):
        load_config(tmp_path / "tuned.yaml")
    (tmp_path / "lost.yaml").write_text("base: no_such_config\n")
    with pytest.raises(WorkbenchError, match="its base 'no_such_config' is neither a YAML file beside it nor a "
                                             "shipped config"):
        load_config(tmp_path / "lost.yaml")
    (tmp_path / "wrong.yaml").write_text(f"base: {FASHION}\ntrain:\n  epoch: 3\n")
    with pytest.raises(WorkbenchError, match=r"unknown setting train\.epoch in .*wrong.yaml"):
        load_config(tmp_path / "wrong.yaml")


def test_augmentation_defaults_have_one_source():
    defaults = {f"data.augmentation.{key}": value for key, value in vars(Augmentation()).items()}
    assert {name: SETTINGS[name][1] for name in defaults} == defaults
    assert build_config({})["data"]["augmentation"] == vars(Augmentation())
    assert Augmentation().rotation_limit == 30.0 == load_config("lite_csw_hrnet_256x192_coco")["data"][
        "augmentation"]["rotation_limit"]


# loss, schedule, sampler

def test_loss_is_mmpose_joints_mse_with_target_weights():
    torch.manual_seed(0)
    heatmaps, targets = torch.rand(2, 17, 8, 6), torch.rand(2, 17, 8, 6)
    weights = (torch.rand(2, 17) > 0.3).float()
    per_joint = [0.5 * torch.nn.functional.mse_loss(heatmaps[:, k].reshape(2, -1) * weights[:, k, None],
                                                    targets[:, k].reshape(2, -1) * weights[:, k, None])
                 for k in range(17)]
    loss = JointsMSELoss()(heatmaps, targets, weights)
    assert loss.item() == pytest.approx(torch.stack(per_joint).mean().item(), rel=1e-6)
    unweighted = heatmaps.clone()
    unweighted[weights == 0] += 10.0  # joints of weight 0 add nothing
    assert JointsMSELoss()(unweighted, targets, weights).item() == pytest.approx(loss.item(), rel=1e-6)


def test_lr_schedule_warms_up_over_iterations_then_steps_down_at_epochs():
    def factor(step: int) -> float:
        return lr_factor(step, 100, 500, 0.001, [170, 200], 0.1)

    assert factor(0) == pytest.approx(0.001) and factor(250) == pytest.approx(0.5005) and factor(500) == 1.0
    assert factor(16_999) == 1.0 and factor(17_000) == pytest.approx(0.1) and factor(20_000) == pytest.approx(0.01)


def test_sampler_shares_an_epoch_among_processes_and_starts_mid_epoch():
    shares = [list(ResumableSampler(10, num_replicas=2, rank=rank, seed=3)) for rank in (0, 1)]
    assert sorted(index for share in shares for _, index in share) == list(range(10))
    sampler = ResumableSampler(10, seed=3)
    sampler.set_epoch(4)
    whole = list(sampler)
    assert whole != list(ResumableSampler(10, seed=3)) and {epoch for epoch, _ in whole} == {4}
    sampler.set_epoch(4, start=6)
    assert list(sampler) == whole[6:] and len(sampler) == 4


# logs

def test_logs_keep_the_last_record_of_an_epoch_and_refuse_damaged_lines(tmp_path):
    from workbench.training.logs import append_record, truncate_log

    log = tmp_path / "log.jsonl"
    for epoch, loss in ((1, 0.3), (2, 0.2), (2, 0.1), (3, 0.05)):
        append_record(log, {"epoch": epoch, "loss": loss})
    assert [(r["epoch"], r["loss"]) for r in read_log(log)] == [(1, 0.3), (2, 0.1), (3, 0.05)]
    truncate_log(log, 2)
    assert [r["epoch"] for r in read_log(log)] == [1, 2] and not list(tmp_path.glob(".*tmp*"))
    log.write_text(log.read_text() + '{"loss": 0.1}\n')
    with pytest.raises(WorkbenchError, match=r"line 3 is not an epoch record"):
        read_log(log)
    log.write_text('{"epoch": 1\n')
    with pytest.raises(WorkbenchError, match=r"line 1 is not JSON"):
        read_log(log)


# runs

def test_short_real_run_on_fashion_pose_photos_lowers_the_loss(data_root, tmp_path):
    config = load_config(FASHION, [f"data.root={data_root}", "model.input_size=[128,96]", "data.subset=64",
                                   "train.batch_size=16", "train.epochs=4", "train.warmup_iters=6",
                                   "validation.every=4", "validation.subset=16", "train.threads=1",
                                   "data.workers=1", "output.progress=false"])
    result = train(config, tmp_path)
    records = read_log(tmp_path / "log.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3, 4] and result.step == 16
    assert records[-1]["loss"] < 0.85 * records[0]["loss"]
    assert records[-1]["AP"] is not None and (tmp_path / "best.pt").is_file()
    assert (tmp_path / "training_curves.png").stat().st_size > 10_000

    # on the same crops without augmentation, compared as in training (BatchNorm on batch statistics), the trained
    # network beats the one it started from
    crops = CocoKeypoints(data_root / "fashion-pose" / "person_keypoints_train.json",
                          data_root / "fashion-pose" / "images", (128, 96), sigma=2.0, enclose_keypoints=True)
    batch = torch.utils.data.default_collate([crops[i] for i in range(16)])
    torch.manual_seed(config["train"]["seed"])
    start = build_model("lite_csw_hrnet", input_size=(128, 96))
    trained = load("lite_csw_hrnet", tmp_path / "last.pt", input_size=(128, 96)).train()
    with one_thread(), torch.no_grad():
        before, after = (JointsMSELoss()(net(batch["image"]), batch["target"], batch["target_weight"]).item()
                         for net in (start, trained))
    assert after < 0.8 * before


def test_resume_after_sigterm_gives_the_weights_of_an_uninterrupted_run(tiny_run, data_root, tmp_path):
    config, reference = tiny_run
    output = tmp_path / "run"
    args = ["--config", FASHION, "--output", str(output), "--set", *_tiny(data_root)]
    process = _run_cli(args)
    while not (output / "last.pt").exists() and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    interrupted = load_checkpoint(output / "last.pt")
    assert 6 <= interrupted["step"] < 18 and "stopped by SIGTERM" in stdout

    result = train(config, output, resume=output / "last.pt")
    assert (result.epochs_done, result.step, result.stopped_by) == (3, 18, None)
    resumed, uninterrupted = load_checkpoint(output / "last.pt"), load_checkpoint(reference / "last.pt")
    for key, value in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    for moments, expected in zip(resumed["optimizer"]["state"].values(), uninterrupted["optimizer"]["state"].values()):
        assert torch.equal(moments["exp_avg"], expected["exp_avg"])
    assert [r["loss"] for r in read_log(output / "log.jsonl")] == [r["loss"] for r in
                                                                    read_log(reference / "log.jsonl")]


def test_ctrl_c_to_the_process_group_stops_cleanly_and_a_run_with_loader_workers_exits(data_root, tmp_path):
    output = tmp_path / "run"
    args = ["--config", FASHION, "--output", str(output), "--set", *_tiny(data_root, "data.workers=2")]
    process = _run_cli(args, start_new_session=True)
    while not (output / "last.pt").exists() and process.poll() is None:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "stopped by SIGINT" in stdout, stderr
    assert "killed by signal" not in stderr and "KeyboardInterrupt" not in stderr
    assert 6 <= load_checkpoint(output / "last.pt")["step"] < 18

    resumed = _run_cli([*args, "--resume"])
    stdout, stderr = resumed.communicate(timeout=180)
    assert resumed.returncode == 0 and "done: 3 epochs, 18 steps" in stdout, stderr


def test_two_gloo_processes_under_torchrun_train_and_rank0_checkpoint_loads(data_root, tmp_path):
    output = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "workbench", "train", "--config", FASHION, "--output", str(output), "--set",
               *_tiny(data_root, "train.batch_size=4", "train.epochs=2")]
    finished = subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    state = torch.load(output / "last.pt", map_location="cpu", weights_only=True)
    assert (state["world_size"], state["epoch"], state["step"]) == (2, 2, 12)  # 48 crops / (2 x 4) per epoch
    assert state["config"]["train"]["batch_size"] == 4 and state["best_epoch"] == 2
    load("lite_csw_hrnet", output / "last.pt", input_size=(64, 64))
    assert [r["epoch"] for r in read_log(output / "log.jsonl")] == [1, 2]


def test_any_damaged_bytes_end_in_a_clear_message(tmp_path):
    """Random bytes make torch's weights-only unpickler fail with any error (IndexError, KeyError, ...): each one a
    WorkbenchError naming the file."""
    for seed in range(200):
        path = tmp_path / f"noise{seed}.pt"
        path.write_bytes(random.Random(seed).randbytes(4096))
        with pytest.raises(WorkbenchError, match="noise.*(not a readable checkpoint|not a training checkpoint)"):
            load_checkpoint(path)


def test_corrupt_or_mismatched_checkpoints_are_refused_with_a_clear_message(tiny_run, tmp_path, capsys):
    config, reference = tiny_run
    good = (reference / "last.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "noise.pt").write_bytes(os.urandom(4096))
    torch.save(build_model("lite_csw_hrnet", (64, 64)).state_dict(), tmp_path / "weights_only.pt")
    for name, message in [("truncated.pt", "not a readable checkpoint"), ("noise.pt", "not a readable checkpoint"),
                          ("weights_only.pt", "not a training checkpoint"), ("missing.pt", "checkpoint not found")]:
        with pytest.raises(WorkbenchError, match=message):
            train(config, tmp_path / "out", resume=tmp_path / name)
    other = build_config(config, ["model.name=lite_hrnet_18"])
    with pytest.raises(WorkbenchError, match=r"another network .*model\.name: 'lite_csw_hrnet' -> 'lite_hrnet_18'"):
        train(other, tmp_path / "out", resume=reference / "last.pt")
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--resume", str(tmp_path / "truncated.pt")])
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "truncated.pt" in error and "\n" not in error
    assert not (tmp_path / "out").exists()


def test_a_new_run_does_not_overwrite_a_saved_one(tiny_run):
    config, reference = tiny_run
    with pytest.raises(WorkbenchError, match="already holds a run.*--resume"):
        train(config, reference)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(data_root, tmp_path):
    # the lr jumps by 1e30 after epoch 1: the weights blow up and the loss stops being finite in epoch 2
    config = load_config(FASHION, _tiny(data_root, "data.subset=32", "validation.every=0", "train.milestones=[1]",
                                        "train.gamma=1e30"))
    with pytest.raises(WorkbenchError, match=r"loss became (nan|inf) at epoch 2.*last good checkpoint.*kept"):
        train(config, tmp_path)
    state = load_checkpoint(tmp_path / "last.pt")
    assert (state["epoch"], state["step"]) == (1, 4)
    assert all(torch.isfinite(value).all() for value in state["model"].values() if value.is_floating_point())


def test_with_a_loss_scaler_a_non_finite_loss_is_a_skipped_step_until_too_many_in_a_row(data_root, tmp_path,
                                                                                         monkeypatch):
    """float16 needs CUDA; a CPU GradScaler stands in for it (same skipping logic: non-finite gradients, no step).
    Steps 3 and 4 of 8 give a NaN loss: both are skipped, warned and counted, and the run goes on; with
    train.max_skipped_steps=1 the second in a row stops it, keeping the last good checkpoint. cudnn.benchmark is
    the setting's value during training and restored after."""
    from workbench.training import loop

    seen = []
    forward_backward = loop.forward_backward

    def poisoned(model, images, targets, weights, criterion, dtype=None, scaler=None):
        seen.append(torch.backends.cudnn.benchmark)
        if len(seen) in (3, 4):
            images = images * float("nan")
        return forward_backward(model, images, targets, weights, criterion, dtype, scaler)

    monkeypatch.setattr(loop, "build_scaler", lambda dtype, device: torch.amp.GradScaler("cpu"))
    monkeypatch.setattr(loop, "forward_backward", poisoned)
    before = torch.backends.cudnn.benchmark
    config = load_config(FASHION, _tiny(data_root, "data.subset=32", "train.epochs=2", "validation.every=0"))
    with one_thread():
        result = train(config, tmp_path / "run")
    assert (result.epochs_done, result.step) == (2, 8) and set(seen) == {True}
    assert torch.backends.cudnn.benchmark == before
    records = read_log(tmp_path / "run" / "log.jsonl")
    assert [r["skipped_steps"] for r in records] == [2, 0] and all(r["loss"] > 0 for r in records)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert all(torch.isfinite(value).all() for value in state["model"].values() if value.is_floating_point())

    seen.clear()
    strict = build_config(config, ["train.max_skipped_steps=1", "train.cudnn_benchmark=false"])
    with one_thread(), pytest.raises(WorkbenchError, match=r"not finite for 2 steps in a row .*max_skipped_steps"):
        train(strict, tmp_path / "strict")
    assert set(seen) == {False}


def test_the_global_batch_is_printed_and_a_coco_run_off_the_published_batch_warned():
    from workbench.training.loop import batch_lines, published_batch

    coco = load_config("lite_csw_hrnet_256x192_coco")
    assert published_batch(coco) == (512, 2e-3) and published_batch(load_config(FASHION)) is None
    assert published_batch(load_config("lite_csw_hrnet_384x288_coco")) == (256, 2e-3)
    assert batch_lines(coco, 8) == ["global batch: 8 process(es) x train.batch_size 64 = 512, lr 0.002"]
    one_gpu = batch_lines(coco, 1)
    assert one_gpu[0].startswith("global batch: 1 process(es) x train.batch_size 64 = 64")
    assert "published lite_csw_hrnet_256x192_coco run used a global batch of 512 (8 GPUs x 64) with lr 0.002" in \
        one_gpu[1] and "train.lr=0.00025" in one_gpu[1]
    assert len(batch_lines(load_config(FASHION), 1)) == 1  # no published batch for the sample recipe


def test_validation_can_use_a_detection_file_and_only_rank0_checks_images_and_validates(data_root, tmp_path):
    from workbench.training.data import build_datasets

    config = load_config(FASHION, [f"data.root={data_root}", "data.val_annotations=coco-sample/test_coco.json",
                                   "data.val_images=coco-sample",
                                   "validation.detections=coco-sample/test_coco_det_AP_H_56.json"])
    train_set, val_set = build_datasets(config)
    assert val_set.from_detections and val_set.summary().split(" from ")[1].startswith("detections")
    assert train_set.coco == {} and len(train_set) == 800  # the parsed JSON is not kept once instances are built
    assert not build_datasets(build_config(config, ["validation.detections=null"]))[1].from_detections
    (tmp_path / "empty").mkdir()
    elsewhere = build_config(config, [f"data.train_images={tmp_path / 'empty'}"])
    with pytest.raises(WorkbenchError, match="images named in .* are missing"):
        build_datasets(elsewhere)
    other_rank = build_datasets(elsewhere, main=False)  # rank 0 checks the files; the others trust it
    assert len(other_rank[0]) == 800 and other_rank[1] is None
