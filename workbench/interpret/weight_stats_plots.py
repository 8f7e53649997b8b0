"""Tables and figures of `workbench.interpret.weight_stats` for several models side by side (notebooks and app alike).

`statistics_frame` lays the per-(stage, function, kind) summaries of every model in one table;
`weight_statistics_figure` draws them: the pooled distribution of the weights, how many saturate near 0 or 1, and
how much they vary across images and within one image. `interval_frame` and `claim_figure` show the like-for-like
comparison of `workbench.interpret.claim` with its bootstrap intervals. Figures are built without pyplot (see
`workbench.interpret.drawing`).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from workbench.interpret.claim import KIND_LABELS
from workbench.interpret.weight_stats import BINS, HIGH, LOW, WeightMapStats, pooled_histogram, summary_rows


def statistics_frame(statistics: Mapping[str, list[WeightMapStats]]) -> pd.DataFrame:
    """`summary_rows` of every model (name -> its statistics) in one table, with a "saturated" column (near_0 +
    near_1) and a "weights" column naming the function and kind (e.g. "cross channel")."""
    frame = pd.DataFrame([row for model, stats in statistics.items() for row in summary_rows(stats, model)])
    if frame.empty:
        return frame
    frame["saturated"] = frame["near_0"] + frame["near_1"]
    frame["weights"] = frame["function"] + " " + frame["kind"]
    return frame


def _histogram_frame(statistics: Mapping[str, list[WeightMapStats]]) -> pd.DataFrame:
    centres = (np.arange(BINS) + 0.5) / BINS
    parts = []
    for model, stats in statistics.items():
        for function, kind in sorted({(s.function, s.kind) for s in stats}):
            parts.append(pd.DataFrame({"weight": centres, "fraction": pooled_histogram(stats, function, kind),
                                       "model": model, "weights": f"{function} {kind}"}))
    return pd.concat(parts, ignore_index=True)


def weight_statistics_figure(statistics: Mapping[str, list[WeightMapStats]], title: str = "") -> Figure:
    """Four panels for models by name -> statistics: (a) the distribution of all weights of each function and kind
    (fraction per bin of [0, 1], log scale), (b) the fraction saturated (below 0.05 or above 0.95) per stage,
    (c) the variation of one weight from image to image, (d) the variation within one image's map, per stage."""
    frame = statistics_frame(statistics)
    if frame.empty:
        raise ValueError("no weight maps to draw: the models have no weighting functions")
    frame["model · weights"] = frame["model"] + " · " + frame["weights"]
    figure = Figure(figsize=(13.0, 8.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    (histogram, saturated), (across, within) = figure.subplots(2, 2)
    sns.lineplot(_histogram_frame(statistics), x="weight", y="fraction", hue="model", style="weights", ax=histogram)
    histogram.set(yscale="log", xlim=(0.0, 1.0), xlabel="weight value", ylabel="fraction of all weights",
                  title="(a) distribution of the weights (pooled over maps)")
    for value in (LOW, HIGH):
        histogram.axvline(value, color="gray", linestyle=":", linewidth=1)
    panels = ((saturated, "saturated", f"(b) saturated: below {LOW} or above {HIGH}", "fraction of weights"),
              (across, "across_image_std", "(c) variation of one weight across images", "std over images (mean)"),
              (within, "within_image_std", "(d) variation within one image's map", "std within a map (mean)"))
    for axes, column, heading, label in panels:
        sns.barplot(frame, x="stage", y=column, hue="model · weights", ax=axes, errorbar=None)
        axes.set(title=heading, ylabel=label, xlabel="stage", ylim=(0.0, max(1.15 * float(frame[column].max()), 1e-3)))
        axes.legend(fontsize=7, title=None)
    if title:
        figure.suptitle(title)
    return figure


PERCENT_STATISTICS = ("below 0.05", "above 0.95", "saturated")
"""Statistics of `workbench.interpret.claim` that are fractions of weights, shown in percent."""


def _cell(value: float, low: float, high: float, percent: bool) -> str:
    if np.isnan(value):
        return "-"
    scale, digits, unit = (100.0, 1, "%") if percent else (1.0, 3, "")
    text = f"{scale * value:.{digits}f}{unit}"
    return text if np.isnan(low) else f"{text} [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"


def interval_frame(table: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """A table of `workbench.interpret.claim` (`like_for_like`, `joint_contrast`) for reading: one column per model
    (`names`) and one for the difference, each cell "value [low, high]" (fractions of weights in percent), the
    kind spelled out (`claim.KIND_LABELS`)."""
    lines = []
    for _, row in table.iterrows():
        percent = row["statistic"] in PERCENT_STATISTICS
        line = {"weights": KIND_LABELS.get(row["kind"], row["kind"]), "stage": row["stage"]}
        if row["location"] != "all":
            line["block"] = row["location"]
        line.update({"maps": row["maps"], "statistic": row["statistic"]})
        for name in names:
            line[name] = _cell(row[name], row[f"{name} low"], row[f"{name} high"], percent)
        if "difference" in row:
            line[f"{names[0]} - {names[1]}" if len(names) > 1 else "difference"] = _cell(
                row["difference"], row["difference low"], row["difference high"], percent)
        lines.append(line)
    return pd.DataFrame(lines)


def _interval_bars(axes, table: pd.DataFrame, statistic: str, names: list[str], scale: float = 1.0) -> None:
    """Bars per (kind, stage) of `statistic` for each model, with their bootstrap intervals."""
    if table.empty:
        axes.text(0.5, 0.5, "nothing to compare", ha="center", va="center", transform=axes.transAxes)
        return
    rows = table[table["statistic"] == statistic]
    labels = [f"{kind.replace(' ', chr(10))}\nstage {stage}" for kind, stage in zip(rows["kind"], rows["stage"])]
    positions = np.arange(len(rows))
    width = 0.8 / len(names)
    for index, name in enumerate(names):
        values = rows[name].to_numpy(dtype=float) * scale
        low, high = rows[f"{name} low"].to_numpy(dtype=float) * scale, rows[f"{name} high"].to_numpy(dtype=float) * scale
        errors = np.maximum(np.nan_to_num(np.stack([values - low, high - values]), nan=0.0), 0.0)
        axes.bar(positions + (index - (len(names) - 1) / 2) * width, np.nan_to_num(values), width, yerr=errors,
                 capsize=2, label=name, color=sns.color_palette()[index])
    axes.set_xticks(positions, labels, fontsize=7)
    axes.legend(fontsize=7)


def claim_figure(table: pd.DataFrame, contrast: pd.DataFrame, histograms: Mapping[str, Mapping[str, np.ndarray]],
                 names: list[str], title: str = "") -> Figure:
    """Six panels of the like-for-like comparison (`workbench.interpret.claim`) per kind and stage, each model's
    bars with its 95% bootstrap interval over images: (a) the distribution of the compared weights (model -> kind ->
    fraction per bin, `claim.pooled_histograms`), (b) the share saturated below 0.05 or above 0.95, (c) the
    across-image and (d) within-image spread in logit space, (e) the share of the spread across images, (f) the mean
    spatial weight at the labelled joints over that elsewhere. `table` and `contrast` are `like_for_like` and
    `joint_contrast` at level "stage"."""
    figure = Figure(figsize=(15.0, 8.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    (distribution, saturated, across), (within, share, joints) = figure.subplots(2, 3)
    centres = (np.arange(BINS) + 0.5) / BINS
    styles = ("-", "--", ":")
    for index, name in enumerate(names):
        for kind_index, (kind, fractions) in enumerate(histograms.get(name, {}).items()):
            distribution.plot(centres, np.where(fractions > 0, fractions, np.nan), styles[kind_index % len(styles)],
                              color=sns.color_palette()[index], label=f"{name} · {kind}")
    distribution.set(yscale="log", xlim=(0.0, 1.0), xlabel="weight value", ylabel="fraction of the weights",
                     title="(a) distribution of the compared weights")
    for value in (LOW, HIGH):
        distribution.axvline(value, color="gray", linestyle=":", linewidth=1)
    distribution.legend(fontsize=7)
    panels = ((saturated, table, "saturated", 100.0, f"(b) saturated: below {LOW} or above {HIGH}", "% of weights"),
              (across, table, "across-image std (logit)", 1.0, "(c) spread of one weight across images",
               "std of the logit over images"),
              (within, table, "within-image std (logit)", 1.0, "(d) spread within one image's map",
               "std of the logit over the map"),
              (share, table, "share across images", 1.0, "(e) share of the spread across images",
               "across² / (across² + within²)"),
              (joints, contrast, "ratio", 1.0, "(f) spatial weight at the labelled joints / elsewhere", "ratio"))
    for axes, frame, statistic, scale, heading, label in panels:
        _interval_bars(axes, frame, statistic, names, scale)
        axes.set(title=heading, ylabel=label)
    joints.axhline(1.0, color="gray", linestyle=":", linewidth=1)
    ratios = np.array([]) if contrast.empty else \
        contrast.loc[contrast["statistic"] == "ratio", [f"{name} low" for name in names]].to_numpy(dtype=float)
    if np.isfinite(ratios).any():
        joints.set_ylim(bottom=min(0.9, 0.95 * float(np.nanmin(ratios))))
    if title:
        figure.suptitle(title)
    return figure


BLOCK_STATISTICS = ("saturated", "across-image std (logit)", "within-image std (logit)", "share across images")


def block_frame(table: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """A `like_for_like` table at level "block" compacted to one line per block and kind: each model's saturation,
    spreads and share across images, and for the saturation and the share the difference first minus second with
    its paired 95% interval (fractions of weights in percent)."""
    lines = []
    for (location, kind), rows in table.groupby(["location", "kind"], sort=False):
        line: dict[str, object] = {"block": location, "weights": kind}
        by_statistic = {row["statistic"]: row for _, row in rows.iterrows()}
        for statistic in BLOCK_STATISTICS:
            row = by_statistic[statistic]
            percent = statistic in PERCENT_STATISTICS
            for name in names:
                line[f"{statistic} · {name}"] = _cell(row[name], np.nan, np.nan, percent)
            if len(names) == 2 and statistic in ("saturated", "share across images"):
                line[f"{statistic} · difference"] = _cell(row["difference"], row["difference low"],
                                                          row["difference high"], percent)
        lines.append(line)
    return pd.DataFrame(lines)
