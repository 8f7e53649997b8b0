"""Tables and figures of `workbench.interpret.weight_stats` for several models side by side (notebooks and app alike).

`statistics_frame` lays the per-(stage, function, kind) summaries of every model in one table;
`weight_statistics_figure` draws them: the pooled distribution of the weights, how many saturate near 0 or 1, and
how much they vary across images and within one image. Figures are built without pyplot (see `workbench.interpret.drawing`).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

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
