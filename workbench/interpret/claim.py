"""The paper's motivating claim, measured like for like: are Lite-HRNet's weights "inadequately learned" next to Lite
CSW-HRNet's?

The two families do not compute the same maps (see `model.weighting`), so each statistic compares what plays the same
part in the same block:
- `single channel`: the single-resolution channel weights, CSW's M_c (N, C) against Lite-HRNet's SE weights (N, C);
- `cross multiplier`: the multiplier the cross-resolution function applies, CSW's M_c (x) M_s (M_c (N, C) broadcast
  over M_s (N, 1, h, w): (N, C, h, w), as `CrossResolutionCSW` multiplies it in) against Lite-HRNet's cross-resolution
  weights (N, C, h, w); both at the smallest branch's size, before the nearest upsampling that repeats each entry;
- `single spatial`: CSW's single-resolution M_s (N, 1, h, w), which multiplies in beside M_c and has no counterpart in
  Lite-HRNet (its SE weights are constant over space); shown for CSW alone.
Only blocks both networks have are compared (Lite CSW-HRNet has one block per module in stage 4, Lite-HRNet two).

Statistics of one map over N images, each measured the same way for both models:
- `below 0.05`, `above 0.95`, `saturated`: the fraction of its entries below LOW = 0.05, above HIGH = 0.95, either;
- `mean weight`: the mean entry;
- `across-image std (logit)`: how much one entry changes from image to image: the root of the mean over entries of
  its variance over images (N - 1 divisor), in logit space (log(w / (1 - w)), weights clipped to [1e-4, 1 - 1e-4],
  i.e. logits within +-9.2), where a saturated weight is not compressed to a small spread by the sigmoid;
- `within-image std (logit)`: how much the entries of one image's map differ: the root of the mean over images of
  the variance over entries, in the same logit space;
- `share across images`: across^2 / (across^2 + within^2): 0 for a fixed pattern that ignores the image, 1 for a
  map whose entries all move together with the image.
Over a group of maps (a stage, a kind) every map counts equally. Intervals are percentile bootstrap intervals over
images: each round draws N images with replacement, the same draw for every map and both models, so a difference
between the models gets a paired interval. The across-image statistic of a map with more than MAX_ENTRIES entries is
measured on a fixed random subset of MAX_ENTRIES entries (the same entries for both models; exact otherwise): the
bootstrap needs each image's logits, N x MAX_ENTRIES x 4 bytes per map.

The paper's reason (1), the spatial importance of the joints: for every spatial weighting (CSW's M_s, the
channel mean of either cross-resolution multiplier) the mean weight at the cells holding a labelled joint of the
crop, against the mean over the cells holding none, over the whole split (`joint_contrast`).

`claim_samples` runs a network over a split once and keeps, per map and image, what every statistic needs
(`MapSamples`, `JointSamples`); `like_for_like` and `joint_contrast` turn two models' samples into tables.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from model import record_weight_maps
from workbench.interpret.weight_stats import BINS, HIGH, LOW

LOGIT_EPS = 1e-4
"""Weights are clipped to [LOGIT_EPS, 1 - LOGIT_EPS] before the logit (|logit| <= 9.21)."""
MAX_ENTRIES = 4096
"""Entries per map whose logits are kept per image for the across-image statistic's bootstrap."""
ROUNDS = 1000
CONFIDENCE = 0.95
SEED = 0

SINGLE_CHANNEL, CROSS_MULTIPLIER, SINGLE_SPATIAL = "single channel", "cross multiplier", "single spatial"
KINDS = (SINGLE_CHANNEL, CROSS_MULTIPLIER, SINGLE_SPATIAL)
KIND_LABELS = {
    SINGLE_CHANNEL: "single-resolution channel weights: CSW M_c | Lite-HRNet SE",
    CROSS_MULTIPLIER: "cross-resolution multiplier: CSW M_c (x) M_s | Lite-HRNet's cross-resolution weights",
    SINGLE_SPATIAL: "single-resolution spatial weights: CSW M_s | none in Lite-HRNet",
}
STATISTICS = ("mean weight", "below 0.05", "above 0.95", "saturated", "across-image std (logit)",
              "within-image std (logit)", "share across images")
CONTRAST_STATISTICS = ("at the joints", "elsewhere", "ratio")
LEVELS = ("kind", "stage", "block")
"""How maps are grouped in a table: one line per kind, per (kind, stage), or per block (each weighting function)."""


def location_of(name: str) -> str:
    """The weighting function of a probe name: "stage3/module0/block1/cross/channel" -> "stage3/module0/block1/cross"."""
    return name.rsplit("/", 1)[0]


def stage_of(location: str) -> int:
    """The paper's stage number of a location ("stage3/..." -> 3)."""
    return int(location.split("/", 1)[0].removeprefix("stage"))


def multipliers(maps: Mapping[str, torch.Tensor]) -> dict[tuple[str, str], torch.Tensor]:
    """(location, kind) -> the compared map of each weighting function in probe `maps` (`model.probes` names and
    shapes), as (N, entries): `single channel` M_c or SE (N, C); `cross multiplier` M_c (x) M_s (N, C*h*w) or
    Lite-HRNet's cross-resolution weights (N, C*h*w); `single spatial` M_s (N, h*w)."""
    found: dict[tuple[str, str], torch.Tensor] = {}
    for name, value in maps.items():
        location, kind = name.rsplit("/", 1)
        if location.endswith("/cross"):
            if kind == "weights":
                found[(location, CROSS_MULTIPLIER)] = value.flatten(1)
            elif kind == "spatial" and f"{location}/channel" in maps:
                channel = maps[f"{location}/channel"].flatten(1)
                found[(location, CROSS_MULTIPLIER)] = (channel[:, :, None, None] * value).flatten(1)
        elif kind == "channel":
            found[(location, SINGLE_CHANNEL)] = value.flatten(1)
        elif kind == "spatial":
            found[(location, SINGLE_SPATIAL)] = value.flatten(1)
    return found


def spatial_profiles(maps: Mapping[str, torch.Tensor]) -> dict[tuple[str, str], torch.Tensor]:
    """(location, kind) -> the spatial weights (N, h, w) of each weighting function with a spatial extent: CSW's
    single-resolution M_s, and the cross-resolution multiplier (M_c (x) M_s or Lite-HRNet's weights) averaged over
    channels. SE weights have none."""
    found: dict[tuple[str, str], torch.Tensor] = {}
    for name, value in maps.items():
        location, kind = name.rsplit("/", 1)
        if location.endswith("/cross"):
            if kind == "weights":
                found[(location, CROSS_MULTIPLIER)] = value.mean(1)
            elif kind == "spatial" and f"{location}/channel" in maps:
                channel_mean = maps[f"{location}/channel"].flatten(1).mean(1)
                found[(location, CROSS_MULTIPLIER)] = channel_mean[:, None, None] * value[:, 0]
        elif kind == "spatial":
            found[(location, SINGLE_SPATIAL)] = value[:, 0]
    return found


def logit(weights: torch.Tensor) -> torch.Tensor:
    """log(w / (1 - w)) of weights clipped to [LOGIT_EPS, 1 - LOGIT_EPS], in float64."""
    clipped = weights.double().clamp(LOGIT_EPS, 1.0 - LOGIT_EPS)
    return torch.log(clipped) - torch.log1p(-clipped)


def _kept_entries(entries: int) -> torch.Tensor | None:
    """The entries whose logits are kept for the across-image bootstrap: all (None) up to MAX_ENTRIES, else a fixed
    random subset that depends only on the map's size (the same for both models)."""
    if entries <= MAX_ENTRIES:
        return None
    generator = torch.Generator().manual_seed(SEED + entries)
    return torch.randperm(entries, generator=generator)[:MAX_ENTRIES].sort().values


@dataclass
class MapSamples:
    """Per-image statistics of one compared map (`location`, `kind`) over N images, enough for every statistic of
    STATISTICS on any resample of the images: the fraction of entries below LOW (`low`), above HIGH (`high`), the
    mean weight (`mean`), the variance of the logits over the entries (`within`), the mean squared logit over the
    kept entries (`square`), all (N,); `gram` (N, N): the mean over the kept entries of the product of two images'
    logits; `histogram` (BINS,): counts of all weights over [0, 1]."""

    location: str
    kind: str
    entries: int
    low: np.ndarray
    high: np.ndarray
    mean: np.ndarray
    within: np.ndarray
    square: np.ndarray
    gram: np.ndarray
    histogram: np.ndarray

    @property
    def images(self) -> int:
        return len(self.low)

    @property
    def stage(self) -> int:
        return stage_of(self.location)


@dataclass
class _MapAccumulator:
    entries: int
    kept: torch.Tensor | None
    parts: dict[str, list[np.ndarray]] = field(default_factory=dict)
    logits: list[torch.Tensor] = field(default_factory=list)
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(BINS, dtype=np.int64))

    def add(self, weights: torch.Tensor) -> None:
        weights = weights.detach().double().cpu()
        z = logit(weights)
        # kept in float32; the squares come from the same rounded values as the Gram matrix, so that two equal maps
        # differ by exactly nothing
        kept = (z if self.kept is None else z[:, self.kept]).float()
        values = {"low": (weights < LOW).double().mean(1), "high": (weights > HIGH).double().mean(1),
                  "mean": weights.mean(1), "within": z.var(1, correction=0),
                  "square": kept.double().square().mean(1)}
        for key, value in values.items():
            self.parts.setdefault(key, []).append(value.numpy())
        self.logits.append(kept)
        self.histogram += np.histogram(weights.numpy(), bins=BINS, range=(0.0, 1.0))[0]

    def samples(self, location: str, kind: str) -> MapSamples:
        kept = torch.cat(self.logits).double()
        gram = (kept @ kept.T / kept.shape[1]).numpy()
        values = {key: np.concatenate(value) for key, value in self.parts.items()}
        return MapSamples(location, kind, self.entries, gram=gram, histogram=self.histogram.copy(), **values)


@dataclass
class JointSamples:
    """Per image (N,), the mean spatial weight of one weighting function (`location`, `kind`) at the labelled
    joints of the crop (`at`: each joint samples the cell it lies in; NaN without labelled joints inside the crop) and
    over the cells holding no labelled joint (`elsewhere`)."""

    location: str
    kind: str
    at: np.ndarray
    elsewhere: np.ndarray

    @property
    def images(self) -> int:
        return len(self.at)

    @property
    def stage(self) -> int:
        return stage_of(self.location)


def joint_cells(joints: np.ndarray, visible: np.ndarray, crop_size: tuple[int, int],
                map_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The cells of an (h, w) map over a crop of `crop_size` (H, W) pixels that hold the labelled joints (K, 2) as
    (x, y) crop pixels with flags `visible` (K,): (rows, columns) of each labelled joint inside the crop."""
    height, width = map_size
    inside = visible & (joints[:, 0] >= 0) & (joints[:, 1] >= 0) & (joints[:, 0] < crop_size[1]) \
        & (joints[:, 1] < crop_size[0])
    points = joints[inside]
    columns = np.minimum((points[:, 0] * width / crop_size[1]).astype(int), width - 1)
    rows = np.minimum((points[:, 1] * height / crop_size[0]).astype(int), height - 1)
    return rows, columns


def _joint_means(profile: np.ndarray, joints: np.ndarray, visible: np.ndarray,
                 crop_size: tuple[int, int]) -> tuple[float, float]:
    """(mean weight at the labelled joints, mean weight over the other cells) of one spatial map (h, w)."""
    rows, columns = joint_cells(joints, visible, crop_size, profile.shape)
    if rows.size == 0:
        return np.nan, float(profile.mean())
    others = np.ones(profile.shape, dtype=bool)
    others[rows, columns] = False
    return float(profile[rows, columns].mean()), float(profile[others].mean()) if others.any() else np.nan


class ClaimRecorder:
    """Accumulates, batch by batch of probe maps, the `MapSamples` of every compared map and (when joints are given)
    the `JointSamples` of every spatial weighting. `add` takes the probe maps of one batch (`model.probes`), and the
    crops' joints (N, 17, 2) in crop pixels, their labelled flags (N, 17) and the crop size (H, W)."""

    def __init__(self) -> None:
        self._maps: dict[tuple[str, str], _MapAccumulator] = {}
        self._joints: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
        self.images = 0

    def add(self, maps: Mapping[str, torch.Tensor], joints: np.ndarray | None = None,
            visible: np.ndarray | None = None, crop_size: tuple[int, int] | None = None) -> None:
        for key, weights in multipliers(maps).items():
            if key not in self._maps:
                self._maps[key] = _MapAccumulator(weights.shape[1], _kept_entries(weights.shape[1]))
            self._maps[key].add(weights)
        if joints is not None:
            for key, profile in spatial_profiles(maps).items():
                at, elsewhere = self._joints.setdefault(key, ([], []))
                for one, points, flags in zip(profile.double().cpu().numpy(), joints, visible):
                    pair = _joint_means(one, np.asarray(points, dtype=np.float64), np.asarray(flags, dtype=bool),
                                        crop_size)
                    at.append(pair[0])
                    elsewhere.append(pair[1])
        self.images += next(iter(maps.values())).shape[0] if maps else 0

    def map_samples(self) -> dict[tuple[str, str], MapSamples]:
        """(location, kind) -> the samples of every compared map, in forward order."""
        return {key: acc.samples(*key) for key, acc in self._maps.items()}

    def joint_samples(self) -> dict[tuple[str, str], JointSamples]:
        """(location, kind) -> the joint contrast samples of every spatial weighting, in forward order."""
        return {key: JointSamples(*key, np.array(at), np.array(elsewhere))
                for key, (at, elsewhere) in self._joints.items()}


@dataclass
class ClaimSamples:
    """What one model's weighting functions did over a split: `maps` and `joints` by (location, kind), over the
    crops `indices` (instance indices of the dataset, in order)."""

    maps: dict[tuple[str, str], MapSamples]
    joints: dict[tuple[str, str], JointSamples]
    indices: list[int]

    @property
    def images(self) -> int:
        return len(self.indices)


@torch.inference_mode()
def claim_samples(network: torch.nn.Module, batches: Iterable[Mapping[str, torch.Tensor]]) -> ClaimSamples:
    """Run `network` (eval mode) over `batches` of dataset samples (`workbench.data.dataset.CocoKeypoints`, collated:
    "image" (N, 3, H, W), "joints" (N, 17, 2) crop pixels, "visible" (N, 17), "index", and "valid", whose False crops
    are skipped) and collect the samples of the like-for-like statistics and of the joint contrast."""
    network.eval()
    device = next(network.parameters()).device
    recorder = ClaimRecorder()
    indices: list[int] = []
    for batch in batches:
        keep = batch["valid"].bool() if "valid" in batch else torch.ones(len(batch["image"]), dtype=torch.bool)
        if not keep.any():
            continue
        images = batch["image"][keep].to(device)
        with record_weight_maps(network) as maps:
            network(images)
        recorder.add(maps, batch["joints"][keep].numpy(), batch["visible"][keep].numpy(), tuple(images.shape[-2:]))
        indices += batch["index"][keep].tolist()
    return ClaimSamples(recorder.map_samples(), recorder.joint_samples(), indices)


def bootstrap_weights(images: int, rounds: int = ROUNDS, seed: int = SEED) -> np.ndarray:
    """(rounds + 1, images) weights of the images: row 0 the sample itself (1 / images each), then one row per
    bootstrap round (how often the round drew each image, over images)."""
    generator = np.random.default_rng(seed)
    counts = np.zeros((rounds + 1, images))
    counts[0] = 1.0
    if rounds and images:
        picks = generator.integers(0, images, (rounds, images))
        np.add.at(counts, (np.repeat(np.arange(1, rounds + 1), images), picks.ravel()), 1.0)
    return counts / max(images, 1)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def map_statistics(samples: MapSamples, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every statistic of STATISTICS of one map for each row of image `weights` (R, N) (`bootstrap_weights`): (R,)."""
    # half the mean squared logit difference of two images, over pairs of distinct draws: the variance over images
    # with the N - 1 divisor, and no downward bias from an image drawn twice (its pairs with itself are left out)
    distance = (samples.square[:, None] + samples.square[None, :]) / 2 - samples.gram
    pairs = 1.0 - np.square(weights).sum(1)
    across = np.maximum(_ratio(((weights @ distance) * weights).sum(1), pairs), 0.0)
    within = weights @ samples.within
    low, high = weights @ samples.low, weights @ samples.high
    return {"mean weight": weights @ samples.mean, "below 0.05": low, "above 0.95": high, "saturated": low + high,
            "across-image std (logit)": np.sqrt(across), "within-image std (logit)": np.sqrt(within),
            "share across images": _ratio(across, across + within)}


def joint_statistics(samples: JointSamples, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Mean weight at the joints, elsewhere, and their ratio, over the images with labelled joints, for each row of
    image `weights` (R, N): (R,)."""
    valid = ~np.isnan(samples.at) & ~np.isnan(samples.elsewhere)
    share = weights @ valid
    at = _ratio(weights @ np.where(valid, samples.at, 0.0), share)
    elsewhere = _ratio(weights @ np.where(valid, samples.elsewhere, 0.0), share)
    return {"at the joints": at, "elsewhere": elsewhere, "ratio": _ratio(at, elsewhere)}


def _group(location: str, kind: str, level: str) -> tuple[str, str, str]:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    stage = "all" if level == "kind" else str(stage_of(location))
    return kind, stage, location if level == "block" else "all"


def _aggregate(per_map: Mapping[tuple[str, str], dict[str, np.ndarray]],
               level: str) -> dict[tuple[str, str, str], tuple[int, dict[str, np.ndarray]]]:
    """Group per-map statistics by `level`, every map counting equally: group -> (maps, statistic -> (R,))."""
    groups: dict[tuple[str, str, str], list[dict[str, np.ndarray]]] = {}
    for (location, kind), values in per_map.items():
        groups.setdefault(_group(location, kind, level), []).append(values)
    return {key: (len(items), {name: _mean_over_maps([item[name] for item in items]) for name in items[0]})
            for key, items in groups.items()}


def _mean_over_maps(values: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of per-map statistics (R,) each, maps where a statistic is undefined (NaN) left out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all maps undefined in a round: NaN, as meant
        return np.nanmean(np.stack(values), axis=0)


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """(value of the sample, low, high) of rows [sample, round 1, ...]."""
    tail = (1.0 - confidence) / 2
    rounds = values[1:][~np.isnan(values[1:])]
    if np.isnan(values[0]) or rounds.size == 0:
        return float(values[0]), np.nan, np.nan
    low, high = np.quantile(rounds, [tail, 1.0 - tail])
    return float(values[0]), float(low), float(high)


def _table(first: Mapping, second: Mapping | None, names: Sequence[str], statistic_of, statistics: Sequence[str],
           level: str, rounds: int, confidence: float, seed: int) -> pd.DataFrame:
    """One line per group of `level` and statistic: each model's value with its interval, and (where both have the
    group) the difference first minus second with its paired interval."""
    samples = [first] + ([second] if second is not None else [])
    counts = {next(iter(s.values())).images for s in samples if s}
    if len(counts) > 1:
        raise ValueError(f"the models' samples cover different numbers of images ({sorted(counts)}): run both over "
                         "the same crops")
    weights = bootstrap_weights(counts.pop() if counts else 0, rounds, seed)
    grouped = [_aggregate({key: statistic_of(value, weights) for key, value in s.items()}, level) for s in samples]
    keys = list(dict.fromkeys(key for g in grouped for key in g))
    order = {kind: i for i, kind in enumerate(KINDS)}
    keys.sort(key=lambda k: (order.get(k[0], len(order)), k[1] != "all", int(k[1]) if k[1] != "all" else 0))
    lines = []
    for key in keys:
        for statistic in statistics:
            line: dict[str, object] = {"kind": key[0], "stage": key[1], "location": key[2],
                                       "maps": max(g[key][0] for g in grouped if key in g),
                                       "images": len(weights[0]), "statistic": statistic}
            found = []
            for name, g in zip(names, grouped):
                value, low, high = _interval(g[key][1][statistic], confidence) if key in g else (np.nan,) * 3
                line.update({name: value, f"{name} low": low, f"{name} high": high})
                found.append(g[key][1][statistic] if key in g else None)
            if len(found) == 2:
                both = found[0] is not None and found[1] is not None
                value, low, high = _interval(found[0] - found[1], confidence) if both else (np.nan,) * 3
                line.update({"difference": value, "difference low": low, "difference high": high})
            lines.append(line)
    return pd.DataFrame(lines)


def _matched(first: Mapping[tuple[str, str], object], second: Mapping[tuple[str, str], object] | None,
             first_indices: Sequence[int], second_indices: Sequence[int] | None) -> tuple[dict, dict | None]:
    """Keep the (location, kind) both models have, and those of the first with no counterpart kind in the second
    (CSW's single-resolution M_s); refuse samples over different crops."""
    if second is None:
        return dict(first), None
    if list(first_indices) != list(second_indices):
        raise ValueError("the two models' samples cover different crops: run both over the same split and limit")
    second_kinds = {kind for _, kind in second}
    keep = {key: value for key, value in first.items() if key in second or key[1] not in second_kinds}
    return keep, {key: value for key, value in second.items() if key in first}


def like_for_like(first: ClaimSamples, second: ClaimSamples | None = None,
                  names: Sequence[str] = ("lite_csw_hrnet", "lite_hrnet_18"), level: str = "kind",
                  rounds: int = ROUNDS, confidence: float = CONFIDENCE, seed: int = SEED) -> pd.DataFrame:
    """The table of the claim: per group of `level` ("kind", "stage" or "block", see LEVELS) and statistic of
    STATISTICS, each model's value (named by `names`) with its bootstrap interval over images, and the difference
    first minus second with its paired interval. Only the blocks both models have are compared; CSW's single M_s
    appears for the first model alone. Columns: kind, stage, location, maps, images, statistic, then per model
    `name`, `name low`, `name high`, then `difference`, `difference low`, `difference high`."""
    maps_first, maps_second = _matched(first.maps, second.maps if second else None, first.indices,
                                       second.indices if second else None)
    return _table(maps_first, maps_second, names[:2 if second else 1], map_statistics, STATISTICS, level, rounds,
                  confidence, seed)


def joint_contrast(first: ClaimSamples, second: ClaimSamples | None = None,
                   names: Sequence[str] = ("lite_csw_hrnet", "lite_hrnet_18"), level: str = "kind",
                   rounds: int = ROUNDS, confidence: float = CONFIDENCE, seed: int = SEED) -> pd.DataFrame:
    """The paper's reason (1) over the split: per group of `level` the mean spatial weight at the labelled joints,
    elsewhere, and their ratio (above 1: the weighting favours the joints), each model's with its bootstrap interval
    over images, and the paired difference. Columns as `like_for_like`, statistics CONTRAST_STATISTICS."""
    joints_first, joints_second = _matched(first.joints, second.joints if second else None, first.indices,
                                           second.indices if second else None)
    return _table(joints_first, joints_second, names[:2 if second else 1], joint_statistics, CONTRAST_STATISTICS,
                  level, rounds, confidence, seed)


def pooled_histograms(samples: ClaimSamples) -> dict[str, np.ndarray]:
    """Kind -> the fraction of all weights of that kind's maps per bin of [0, 1] (BINS bins)."""
    totals: dict[str, np.ndarray] = {}
    for (_, kind), value in samples.maps.items():
        totals[kind] = totals.get(kind, np.zeros(BINS)) + value.histogram
    return {kind: total / max(total.sum(), 1.0) for kind, total in totals.items()}
