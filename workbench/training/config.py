"""Training settings: YAML files in `workbench/configs/`, checked against one table of known settings.

A config is a nested dict of plain values (it is stored inside every checkpoint as it is). Its sections:
`model` (network and input size), `data` (files, targets, augmentation, loading), `train` (optimiser, schedule,
precision, devices), `validation` and `output`. Any setting can be changed with an override "section.key=value"
whose value is read as YAML (`train.epochs=5`, `model.input_size=[128,96]`, `data.root=/datasets`).

A config file may start from another: `base: <config name>` (a shipped config, or a YAML file beside it, with or
without `.yaml`), then hold only the settings that differ. The merge is per setting (the dotted names of SETTINGS,
so sections merge recursively and a `dict` setting such as model.options is replaced whole), and the result is the
same plain dict a complete file gives: checkpoints and run records never hold `base`. Bases go one level deep: a
base that has a base of its own is refused, so that a config and its base together show the whole recipe.
"""
from __future__ import annotations

import copy
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from model import model_names
from workbench.codec import ENCODINGS
from workbench.common.errors import WorkbenchError
from workbench.common.paths import data_root
from workbench.data.transforms import Augmentation

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

Config = dict[str, Any]

# Every setting: dotted name -> (accepted types, default). The defaults are the paper's recipe for Lite CSW-HRNet on
# COCO at 256x192, which is Lite-HRNet's official config where the paper is silent; the augmentation defaults are the
# fields of `workbench.data.transforms.Augmentation` (whose docstring says where paper and official config differ).
# A `dict` setting (model.options) is passed on as it is.
SETTINGS: dict[str, tuple[tuple[type, ...], Any]] = {
    "name": ((str,), "run"),
    "model.name": ((str,), "lite_csw_hrnet"),
    "model.input_size": ((list,), [256, 192]),
    "model.options": ((dict,), {}),
    "model.backbone_weights": ((str, type(None)), None),
    "data.root": ((str, type(None)), None),
    "data.train_annotations": ((str,), "coco/annotations/person_keypoints_train2017.json"),
    "data.train_images": ((str,), "coco/train2017"),
    "data.val_annotations": ((str,), "coco/annotations/person_keypoints_val2017.json"),
    "data.val_images": ((str,), "coco/val2017"),
    "data.sigma": ((float, type(None)), None),
    "data.encoding": ((str,), "standard"),
    "data.enclose_keypoints": ((bool,), False),
    "data.subset": ((int, type(None)), None),
    "data.workers": ((int,), 4),
    **{f"data.augmentation.{field.name}": ((type(field.default),), field.default) for field in fields(Augmentation)},
    "train.epochs": ((int,), 210),
    "train.batch_size": ((int,), 64),
    "train.lr": ((float,), 2e-3),
    "train.weight_decay": ((float,), 0.0),
    "train.warmup_iters": ((int,), 500),
    "train.warmup_ratio": ((float,), 1e-3),
    "train.milestones": ((list,), [170, 200]),
    "train.gamma": ((float,), 0.1),
    "train.seed": ((int,), 0),
    "train.device": ((str,), "auto"),
    "train.precision": ((str,), "auto"),
    "train.channels_last": ((bool,), False),
    "train.sync_bn": ((bool,), False),
    "train.threads": ((int, type(None)), None),
    "train.cudnn_benchmark": ((bool,), True),
    "train.max_skipped_steps": ((int,), 20),
    "validation.every": ((int,), 10),
    "validation.subset": ((int, type(None)), None),
    "validation.flip": ((bool,), True),
    "validation.batch_size": ((int,), 32),
    "validation.detections": ((str, type(None)), None),
    "output.tensorboard": ((bool,), False),
    "output.progress": ((bool,), True),
    "output.log_every": ((int,), 50),
}

PRECISIONS = ("auto", "float32", "float16", "bfloat16")
"""train.precision: autocast dtype. auto = float16 with loss scaling on CUDA, float32 on the CPU (why:
`workbench.training.loop.autocast_dtype`).

Three settings the shipped files leave at their defaults: train.cudnn_benchmark (true: cuDNN picks the fastest
kernels for the fixed training input size; false for bit-reproducible runs), train.max_skipped_steps (a run with a
loss scaler skips an optimiser step whose loss is not finite, and stops after this many in a row) and
validation.detections (a COCO results file of person boxes for the validation images, relative to data.root like
the data paths; null: the ground-truth boxes, as the official config validates. Table 2's AP uses
COCO_val2017_detections_AP_H_56_person.json; `best.pt` is chosen by the AP of the boxes used here)."""
OPTIONAL = ("train.cudnn_benchmark", "train.max_skipped_steps", "validation.detections")
"""Settings added after runs were recorded: a config holds one only when it differs from its default (so the configs
of earlier checkpoints and manifest records stay what they were); read them with `setting`."""


def setting(config: Config, name: str) -> Any:
    """The value of setting `name` (dotted) in `config`, or its default when the config does not hold it."""
    node: Any = config
    for key in name.split("."):
        if not isinstance(node, dict) or key not in node:
            return copy.deepcopy(SETTINGS[name][1])
        node = node[key]
    return node


# Settings that define the network: a checkpoint only resumes a config that agrees on them.
MODEL_KEYS = ("model.name", "model.input_size", "model.options")


def config_names() -> list[str]:
    """The names of the configs shipped in `workbench/configs/` (file stems)."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))


def config_file(source: str | Path) -> Path:
    """A config file given as a path, or as the name of a shipped config (with or without `.yaml`)."""
    path = Path(source)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / f"{path.name.removesuffix('.yaml')}.yaml"
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise WorkbenchError(f"config not found: {source}. Pass a YAML file or one of: {', '.join(config_names())}.")


def flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1}} -> {"train.lr": 1}; a `dict` setting of SETTINGS stays one value."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in SETTINGS:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def unflatten(flat: dict[str, Any]) -> Config:
    """{"train.lr": 1} -> {"train": {"lr": 1}}."""
    nested: Config = {}
    for name, value in flat.items():
        *sections, key = name.split(".")
        node = nested
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = value
    return nested


def _coerce(name: str, value: Any, where: str) -> Any:
    """`value` of setting `name` checked against its accepted types. An int is accepted as a float, and so is a
    string such as "2e-3" (which PyYAML reads as a string: YAML 1.1 floats need a dot, "2.0e-3")."""
    types, _ = SETTINGS[name]
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if float in types and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        raise WorkbenchError(f"setting {name} in {where} is {value!r}; it must be {expected}.")
    return copy.deepcopy(value)


def _set(flat: dict[str, Any], name: str, value: Any, where: str) -> None:
    """Set one dotted setting; `model.options.<key>` sets one model option."""
    for parent in (n for n in SETTINGS if SETTINGS[n][0] == (dict,)):
        if name.startswith(parent + "."):
            flat[parent] = {**flat[parent], name[len(parent) + 1:]: value}
            return
    if name not in SETTINGS:
        close = [n for n in SETTINGS if n.rsplit(".", 1)[-1] == name.rsplit(".", 1)[-1]]
        hint = f" Did you mean {close[0]}?" if close else " Known settings: " + ", ".join(SETTINGS) + "."
        raise WorkbenchError(f"unknown setting {name} in {where}.{hint}")
    flat[name] = _coerce(name, value, where)


def parse_override(text: str) -> tuple[str, Any]:
    """"train.epochs=5" -> ("train.epochs", 5): the value is read as YAML."""
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise WorkbenchError(f"override {text!r} is not of the form section.key=value, e.g. train.epochs=5.")
    try:
        return name.strip(), yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as error:
        raise WorkbenchError(f"override {text!r}: the value is not valid YAML ({error}).") from None


def build_config(settings: dict[str, Any], overrides: list[str] = (), where: str = "the config") -> Config:
    """Defaults, then the nested `settings`, then the "key=value" `overrides`; checked; returns a nested dict."""
    return _build([(settings, where)], overrides)


def _build(layers: list[tuple[dict[str, Any], str]], overrides: list[str]) -> Config:
    """Defaults, then each (nested settings, where they come from) of `layers` in turn, then the overrides."""
    flat = {name: copy.deepcopy(default) for name, (_, default) in SETTINGS.items()}
    for settings, where in layers:
        for name, value in flatten(settings).items():
            _set(flat, name, value, where)
    for text in overrides:
        _set(flat, *parse_override(text), "--set")
    for name in OPTIONAL:
        if flat.get(name) == SETTINGS[name][1]:
            del flat[name]
    config = unflatten(flat)
    check(config)
    return config


def _read_settings(path: Path) -> dict[str, Any]:
    """The nested settings a YAML config file holds, as written (its `base` included)."""
    try:
        settings = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise WorkbenchError(f"config {path} is not valid YAML ({error}). Fix the file.") from None
    if not isinstance(settings, dict):
        raise WorkbenchError(f"config {path} must be a mapping of sections (model, data, train, ...).")
    return settings


def _base_file(base: Any, child: Path) -> Path:
    """The file of `base: <name>` in config `child`: a YAML file beside `child` (name with or without `.yaml`),
    else a shipped config of that name."""
    if not isinstance(base, str) or not base.strip():
        raise WorkbenchError(f"config {child}: base is {base!r}; it must name a config, e.g. "
                             "base: lite_csw_hrnet_256x192_coco.")
    for candidate in (child.parent / base, child.parent / f"{base}.yaml"):
        if candidate.is_file():
            return candidate
    shipped = CONFIG_DIR / f"{Path(base).name.removesuffix('.yaml')}.yaml"
    if shipped.is_file():
        return shipped
    raise WorkbenchError(f"config {child}: its base {base!r} is neither a YAML file beside it nor a shipped config "
                         f"({', '.join(config_names())}).")


def load_config(source: str | Path, overrides: list[str] = ()) -> Config:
    """Read a YAML config (a path or a shipped config's name), over its `base` if it names one, and apply the
    "key=value" overrides."""
    path = config_file(source)
    settings = _read_settings(path)
    settings.setdefault("name", path.stem)
    layers = [(settings, str(path))]
    if "base" in settings:
        base_path = _base_file(settings.pop("base"), path)
        base = _read_settings(base_path)
        if "base" in base:
            raise WorkbenchError(f"config {path}: its base {base_path} has a base of its own ({base['base']!r}); "
                                 "bases go one level deep. Base it on a config without a base, or copy the "
                                 "settings it needs.")
        layers.insert(0, (base, str(base_path)))
    return _build(layers, overrides)


def check(config: Config) -> None:
    """Refuse settings that cannot work, naming the setting and the fix."""

    model, data, train = config["model"], config["data"], config["train"]
    if model["name"] not in model_names():
        raise WorkbenchError(f"model.name {model['name']!r} is unknown; choose one of: {', '.join(model_names())}.")
    size = model["input_size"]
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 and s % 32 == 0 for s in size):
        raise WorkbenchError(f"model.input_size {size} must be [height, width] in multiples of 32, e.g. [256, 192].")
    if data["encoding"] not in ENCODINGS:
        raise WorkbenchError(f"data.encoding {data['encoding']!r}: choose one of {', '.join(ENCODINGS)}.")
    if train["precision"] not in PRECISIONS:
        raise WorkbenchError(f"train.precision {train['precision']!r}: choose one of {', '.join(PRECISIONS)}.")
    if not all(isinstance(m, int) and m > 0 for m in train["milestones"]):
        raise WorkbenchError(f"train.milestones {train['milestones']} must be a list of epochs, e.g. [170, 200].")
    positive = {"train.epochs": train["epochs"], "train.batch_size": train["batch_size"],
                "validation.batch_size": config["validation"]["batch_size"], "train.lr": train["lr"],
                "output.log_every": config["output"]["log_every"]}
    for name, value in positive.items():
        if value <= 0:
            raise WorkbenchError(f"{name} is {value}; it must be positive.")
    for name, value in {"data.workers": data["workers"], "train.warmup_iters": train["warmup_iters"],
                        "validation.every": config["validation"]["every"]}.items():
        if value < 0:
            raise WorkbenchError(f"{name} is {value}; it must be 0 or more.")
    for name in ("data.subset", "validation.subset"):
        section, key = name.split(".")
        if config[section][key] is not None and config[section][key] <= 0:
            raise WorkbenchError(f"{name} is {config[section][key]}; give a positive number of instances or null.")


def data_path(config: Config, key: str, section: str = "data") -> Path:
    """`<section>.<key>` (default `data.<key>`) as a path: relative paths are under `data.root` (default: the shared
    data folder)."""
    root = Path(config["data"]["root"]).expanduser() if config["data"]["root"] else data_root()
    return root / Path(config[section][key]).expanduser()


def model_differences(saved: Config, wanted: Config) -> list[str]:
    """The network settings (MODEL_KEYS) on which two configs disagree, as "name: saved -> wanted" lines."""
    old, new = flatten(saved), flatten(wanted)
    return [f"{name}: {old.get(name)!r} -> {new.get(name)!r}" for name in MODEL_KEYS if old.get(name) != new.get(name)]


def changed_settings(saved: Config, wanted: Config) -> list[str]:
    """Every setting on which two configs disagree, as "name: saved -> wanted" lines."""
    old, new = flatten(saved), flatten(wanted)
    return [f"{name}: {old.get(name)!r} -> {new.get(name)!r}" for name in sorted(old.keys() | new.keys())
            if old.get(name) != new.get(name)]


def dump(config: Config) -> str:
    """The config as YAML text, sections in their usual order."""
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
