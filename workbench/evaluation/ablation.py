"""Do the learned weights matter? Replace weighting functions' outputs and measure what the network loses.

A weighting function that the network ignores, or whose output barely depends on the image, loses nothing when its
output is replaced. Two replacements, each applied to a group of weight maps (`model.probes` names) by a forward hook
on the module that computes the map (the model code is untouched, and the hooks are removed afterwards):
- `dataset mean`: each entry of the map replaced by its mean over the evaluated crops (computed in the unmodified
  network's evaluation pass): the learned average pattern stays, the dependence on the image goes;
- `constant 0.5`: every entry replaced by 0.5: the learned weighting goes altogether (and the features it scaled
  keep about half their size, which the layers after it were not trained for).
The drop is the AP of the unmodified network minus the AP with the replacement, on the same crops (no flip test),
with `workbench.evaluation.metrics.paired_bootstrap`'s interval over images.

Granularity (GROUPINGS): one evaluation of the whole split per group and replacement. Per weighting function
("function": 54 functions in Lite CSW-HRNet, 64 in Lite-HRNet-18, so 238 evaluations for both with two
replacements) is out of reach on the shared 2-core CPU this was built on: one evaluation of the 100 fashion-pose val
crops (no flip, batch 32) takes about 15 s there, which makes an hour against a budget of about ten minutes (the
notebook prints the measured cost each time it runs). So the notebook groups them per stage and function
("stage-function": the cross-resolution or the single-resolution functions of one stage together, M_c and M_s
together for CSW), which the two families share: 6 groups per model, 26 evaluations for both. "stage-kind"
separates CSW's M_c from its M_s; "all" replaces every weighting function at once.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from model import weight_map_modules
from workbench.data.dataset import CocoKeypoints
from workbench.evaluation.metrics import dataset_results, paired_bootstrap

MEAN, HALF = "dataset mean", "constant 0.5"
MODES = (MEAN, HALF)
GROUPINGS = ("function", "stage-kind", "stage-function", "all")
ROUNDS = 1000


def _group_of(name: str, grouping: str) -> str:
    """The group label of probe `name` under `grouping`, e.g. "stage 3 cross-resolution"."""
    pieces = name.split("/")
    location = "/".join(pieces[:-1])
    function = "cross-resolution" if pieces[3] == "cross" else "single-resolution"
    stage = pieces[0].replace("stage", "stage ")
    if grouping == "function":
        return location
    if grouping == "stage-kind":
        return f"{stage} {function} {pieces[-1]}"
    if grouping == "stage-function":
        return f"{stage} {function}"
    if grouping == "all":
        return "all weighting functions"
    raise ValueError(f"grouping must be one of {GROUPINGS}, got {grouping!r}")


def weighting_groups(network: nn.Module, groupings: str | Sequence[str] = "stage-function") -> dict[str, list[str]]:
    """Group label -> the probe names (`model.probes`) replaced together, for each grouping of `groupings` (see
    GROUPINGS) in turn, groups in forward order; {} for networks without weighting functions."""
    groupings = [groupings] if isinstance(groupings, str) else list(groupings)
    groups: dict[str, list[str]] = {}
    for grouping in groupings:
        for name in weight_map_modules(network):
            groups.setdefault(_group_of(name, grouping), []).append(name)
    return groups


@contextmanager
def recorded_means(network: nn.Module, names: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, every forward call of `network` adds the outputs of the weight maps `names` to running
    sums; when the block ends the yielded dict holds each map's mean over every image seen, (1, ...) as the module
    returns it (e.g. (1, C, 1, 1) for M_c, (1, 1, h, w) for M_s)."""
    modules = weight_map_modules(network)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def recorder(name: str):
        def hook(_module: nn.Module, _inputs, output: torch.Tensor) -> None:
            total = output.detach().double().sum(0, keepdim=True)
            sums[name] = total if name not in sums else sums[name] + total
            counts[name] = counts.get(name, 0) + output.shape[0]

        return hook

    means: dict[str, torch.Tensor] = {}
    handles = [modules[name].register_forward_hook(recorder(name)) for name in names]
    try:
        yield means
    finally:
        for handle in handles:
            handle.remove()
    means.update({name: (sums[name] / counts[name]).float() for name in sums})


@contextmanager
def replaced_outputs(network: nn.Module, replacements: Mapping[str, torch.Tensor | float]) -> Iterator[None]:
    """Within the block, each weight map named in `replacements` is replaced in every forward call of `network` by
    its replacement: a tensor broadcast to the output's shape (e.g. a `recorded_means` mean) or a number filling it.
    The hooks are removed when the block ends, even on error."""
    modules = weight_map_modules(network)
    unknown = sorted(set(replacements) - set(modules))
    if unknown:
        raise KeyError(f"no weight maps {', '.join(unknown)} in this network")

    def replacer(value: torch.Tensor | float):
        def hook(_module: nn.Module, _inputs, output: torch.Tensor) -> torch.Tensor:
            if isinstance(value, torch.Tensor):
                return value.to(device=output.device, dtype=output.dtype).expand_as(output)
            return torch.full_like(output, float(value))

        return hook

    handles = [modules[name].register_forward_hook(replacer(value)) for name, value in replacements.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def first_instances(dataset: CocoKeypoints, count: int | None) -> CocoKeypoints:
    """A shallow copy of `dataset` cut to its first `count` instances and their images (all if None), for quick
    runs; the original is left as it was."""
    if count is None or count >= len(dataset):
        return dataset
    cut = copy.copy(dataset)
    cut.instances = dataset.instances[:count]
    used = {instance.image_id for instance in cut.instances}
    cut.images = {image_id: info for image_id, info in dataset.images.items() if image_id in used}
    return cut


@dataclass(frozen=True)
class Ablation:
    """One group of weight maps of one model replaced by one `mode`: the AP of the unmodified network (`ap_full`),
    with the replacement (`ap_replaced`), the drop (full minus replaced) with its paired bootstrap interval
    [`low`, `high`] at `confidence` over `images` images, the share of resamples where the drop is above zero, the
    number of weight maps replaced, and the evaluation's wall time in seconds."""

    model: str
    group: str
    mode: str
    maps: int
    ap_full: float
    ap_replaced: float
    drop: float
    low: float
    high: float
    drop_above_zero: float
    images: int
    rounds: int
    confidence: float
    seconds: float


@dataclass
class AblationRun:
    """Every `Ablation` of one model, the wall time of its unmodified evaluation (`baseline_seconds`, which also
    recorded the dataset means) and of the whole run, and how its groups were chosen."""

    model: str
    groupings: tuple[str, ...]
    ablations: list[Ablation]
    baseline_seconds: float
    seconds: float
    crops: int

    @property
    def evaluations(self) -> int:
        """Evaluations of the split the run made: the unmodified one and one per ablation."""
        return 1 + len(self.ablations)

    def frame(self) -> pd.DataFrame:
        """One line per ablation (the fields of `Ablation`)."""
        return pd.DataFrame([asdict(item) for item in self.ablations])


def estimated_seconds(network: nn.Module, seconds_per_evaluation: float, groupings: str | Sequence[str],
                      modes: Sequence[str] = MODES) -> float:
    """The wall time `ablate` would take with `groupings`, from the time of one evaluation (bootstrap not counted)."""
    return seconds_per_evaluation * (1 + len(weighting_groups(network, groupings)) * len(modes))


def ablate(network: nn.Module, dataset: CocoKeypoints, *, model: str = "", groupings: str | Sequence[str] =
           "stage-function", modes: Sequence[str] = MODES, groups: Sequence[str] | None = None,
           rounds: int = ROUNDS, confidence: float = 0.95, batch_size: int = 32, progress: bool = False,
           seed: int = 0) -> AblationRun:
    """Replace each group of `weighting_groups(network, groupings)` (only the labels in `groups`, if given) by each
    of `modes` (MODES), evaluate `network` on every crop of `dataset` without the flip test, and measure the AP drop
    against the unmodified network with a paired bootstrap over images (`rounds` rounds). The dataset means come
    from the unmodified evaluation. `model` names the network in the results."""
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"modes must be among {MODES}, got {mode!r}")
    network.eval()
    chosen = weighting_groups(network, groupings)
    if groups is not None:
        missing = [label for label in groups if label not in chosen]
        if missing:
            raise KeyError(f"no groups {', '.join(missing)} (known: {', '.join(chosen)})")
        chosen = {label: chosen[label] for label in groups}
    started = time.perf_counter()
    options = dict(flip=False, batch_size=batch_size)
    with torch.inference_mode(), recorded_means(network, list(weight_map_modules(network))) as means:
        predictions, full = dataset_results(network, dataset, **options)
    baseline_seconds = time.perf_counter() - started
    images = [image_id for image_id in dataset.images if image_id not in predictions.unreadable]
    jobs = [(label, mode) for label in chosen for mode in modes]
    ablations = []
    for label, mode in tqdm(jobs, desc=f"ablation {model}", unit="evaluation", disable=not progress):
        replacements = {name: means[name] if mode == MEAN else 0.5 for name in chosen[label]}
        began = time.perf_counter()
        with torch.inference_mode(), replaced_outputs(network, replacements):
            _, replaced = dataset_results(network, dataset, **options)
        seconds = time.perf_counter() - began
        result = paired_bootstrap(dataset.coco, full, replaced, images, rounds=rounds, confidence=confidence,
                                  seed=seed)
        ablations.append(Ablation(model, label, mode, len(replacements), result.ap_first, result.ap_second,
                                  result.difference, result.low, result.high, result.above_zero, result.images,
                                  rounds, confidence, seconds))
    groupings = (groupings,) if isinstance(groupings, str) else tuple(groupings)
    return AblationRun(model, groupings, ablations, baseline_seconds, time.perf_counter() - started, len(dataset))

