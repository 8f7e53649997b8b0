"""What the weighting functions learned, over a whole data split: the paper's motivating claim made measurable.

For every weight map a model computes (see `model.probes`), streamed over batches of crops:
- `near_0`, `near_1`: the fraction of weights below 0.05 / above 0.95 (saturated sigmoids);
- `mean`: the mean weight;
- `within_image_std`: how much the weights vary inside one image's map (across channels for M_c and SE weights,
  across positions for M_s, across both for Lite-HRNet's cross-resolution weights), averaged over images;
- `across_image_std`: how much one weight varies from image to image, averaged over the map's entries: a weight
  that never changes is a constant, not a *conditional* weight;
and a histogram of all values in [0, 1]. The app and the notebooks show the same numbers.

These statistics describe each map as the network computes it; they do not compare two families like for like (CSW
has two maps, M_c and M_s, where Lite-HRNet has one; the within-image spread runs over channels, positions or both
depending on the map; and in sigmoid space a saturated weight has a small spread by construction). The paper's claim
is tested by `workbench.interpret.claim`, which matches the maps block by block and measures both families the same
way, with bootstrap intervals.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from model import run_with_probes

LOW, HIGH = 0.05, 0.95
BINS = 50


@dataclass
class _Accumulator:
    count: int = 0
    total: torch.Tensor | None = None
    total_sq: torch.Tensor | None = None
    values: int = 0
    low: int = 0
    high: int = 0
    within_std: float = 0.0
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(BINS, dtype=np.int64))

    def add(self, maps: torch.Tensor) -> None:
        """maps: (N, ...) weights of N images, float in (0, 1)."""
        maps = maps.double().cpu()
        flat = maps.flatten(1)
        self.total = flat.sum(0) if self.total is None else self.total + flat.sum(0)
        self.total_sq = flat.square().sum(0) if self.total_sq is None else self.total_sq + flat.square().sum(0)
        self.count += flat.shape[0]
        self.values += flat.numel()
        self.low += int((flat < LOW).sum())
        self.high += int((flat > HIGH).sum())
        self.within_std += float(flat.std(1, correction=0).sum())
        self.histogram += np.histogram(flat.numpy(), bins=BINS, range=(0.0, 1.0))[0]


@dataclass(frozen=True)
class WeightMapStats:
    """Statistics of one weight map over `images` images (see the module docstring); `histogram` has 50 bins
    over [0, 1]."""

    name: str
    stage: int
    function: str
    kind: str
    images: int
    mean: float
    near_0: float
    near_1: float
    within_image_std: float
    across_image_std: float
    histogram: np.ndarray


def _parts(name: str) -> tuple[int, str, str]:
    pieces = name.split("/")
    return int(pieces[0].removeprefix("stage")), ("cross" if pieces[3] == "cross" else "single"), pieces[-1]


@torch.inference_mode()
def weight_statistics(network: torch.nn.Module, batches: Iterable[torch.Tensor]) -> list[WeightMapStats]:
    """Run `network` (eval mode) over `batches` of normalised crops (N, 3, H, W) and return the statistics of every
    weight map it computes, in forward order; [] for networks without weighting functions."""
    network.eval()
    accumulators: dict[str, _Accumulator] = {}
    for images in batches:
        _, maps = run_with_probes(network, images)
        for name, value in maps.items():
            accumulators.setdefault(name, _Accumulator()).add(value)
    stats = []
    for name, acc in accumulators.items():
        mean_per_entry = acc.total / acc.count
        variance = (acc.total_sq / acc.count - mean_per_entry.square()).clamp_min(0)
        stage, function, kind = _parts(name)
        stats.append(
            WeightMapStats(
                name=name,
                stage=stage,
                function=function,
                kind=kind,
                images=acc.count,
                mean=float(mean_per_entry.mean()),
                near_0=acc.low / acc.values,
                near_1=acc.high / acc.values,
                within_image_std=acc.within_std / acc.count,
                across_image_std=float(variance.sqrt().mean()),
                histogram=acc.histogram.copy(),
            )
        )
    return stats


def summary_rows(stats: list[WeightMapStats], model: str = "") -> list[dict[str, float | int | str]]:
    """One row per (stage, function, kind), weighting each map equally: for tables and plots."""
    groups: dict[tuple[int, str, str], list[WeightMapStats]] = {}
    for s in stats:
        groups.setdefault((s.stage, s.function, s.kind), []).append(s)
    rows = []
    for (stage, function, kind), items in groups.items():
        row: dict[str, float | int | str] = {"model": model, "stage": stage, "function": function, "kind": kind,
                                             "maps": len(items)}
        for key in ("mean", "near_0", "near_1", "within_image_std", "across_image_std"):
            row[key] = float(np.mean([getattr(s, key) for s in items]))
        rows.append(row)
    return rows


def pooled_histogram(stats: list[WeightMapStats], function: str | None = None, kind: str | None = None) -> np.ndarray:
    """Fraction of all weights per bin of [0, 1] (50 bins), over the maps of the given function and kind."""
    chosen = [s.histogram for s in stats
              if (function is None or s.function == function) and (kind is None or s.kind == kind)]
    if not chosen:
        return np.zeros(BINS)
    total = np.sum(chosen, axis=0).astype(np.float64)
    return total / max(total.sum(), 1.0)
