"""Two trained models on the same images: their AP difference with a paired bootstrap interval over images, so that
a reader sees whether a gap between, say, Lite CSW-HRNet and Lite-HRNet-18 is larger than the choice of images.

The interval covers the sampling of images only: both models come from one training run each, so the spread
between training runs (seeds) is not in it.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from workbench.evaluation.metrics import dataset_results, paired_bootstrap
from workbench.evaluation.sets import EvalSet, dataset_of
from workbench.common.files import write_text_atomic
from workbench.zoo.loader import load
from workbench.zoo.manifest import WeightsEntry

PAIRED_SETS = ("fashion-pose-val-annotated", "fashion-pose-val")
"""The sets a paired comparison uses by default: the ones large enough to say something (the report's `images`
column counts each set's images; coco-sample holds only a handful)."""
COLUMNS = ["set", "boxes", "decode", "first", "second", "AP first", "AP second", "difference", "low", "high",
           "P(first > second)", "images", "rounds"]


def paired_table(first: WeightsEntry, second: WeightsEntry, sets: Sequence[EvalSet],
                 decodings: Sequence[str] = ("standard",), flip: bool = True, batch_size: int = 32,
                 device: str | torch.device = "cpu", rounds: int = 1000, progress: bool = True) -> pd.DataFrame:
    """One line per (set, decoding): both entries' AP on the set's images (each at its own input size), the
    difference first minus second, its 95% paired bootstrap interval over images, and the share of resamples in
    which the first scores higher."""
    networks = [load(entry.model, entry, device=device) for entry in (first, second)]
    lines = []
    jobs = [(eval_set, decode) for eval_set in sets for decode in decodings]
    for eval_set, decode in tqdm(jobs, desc="paired", unit="set", disable=not progress):
        outcomes = []
        for entry, network in zip((first, second), networks):
            dataset = dataset_of(eval_set, entry.input_size)
            predictions, results = dataset_results(network, dataset, flip=flip, decode=decode, batch_size=batch_size)
            outcomes.append((dataset, predictions, results))
        unreadable = set(outcomes[0][1].unreadable) | set(outcomes[1][1].unreadable)
        dataset = outcomes[0][0]
        images = [image_id for image_id in dataset.images if image_id not in unreadable]
        result = paired_bootstrap(dataset.coco, outcomes[0][2], outcomes[1][2], images, rounds=rounds)
        lines.append({"set": eval_set.name, "boxes": eval_set.boxes, "decode": decode, "first": first.name,
                      "second": second.name, "AP first": round(result.ap_first, 4),
                      "AP second": round(result.ap_second, 4), "difference": round(result.difference, 4),
                      "low": round(result.low, 4), "high": round(result.high, 4),
                      "P(first > second)": round(result.above_zero, 3), "images": result.images,
                      "rounds": result.rounds})
    return pd.DataFrame(lines, columns=COLUMNS)


def paired_markdown(table: pd.DataFrame, first: WeightsEntry, second: WeightsEntry, command: str, flip: bool) -> str:
    """The comparison as a Markdown report: how it was measured, the table, and one sentence per line saying
    whether the interval excludes zero."""
    readings = []
    for line in table.itertuples(index=False):
        verdict = ("the interval excludes zero" if line.low > 0 or line.high < 0 else
                   "the interval includes zero: on these images the two are not told apart")
        readings.append(f"- {line.set} ({line.decode}): {line.first} minus {line.second} = {line.difference:+.3f} "
                        f"AP, 95% interval [{line.low:+.3f}, {line.high:+.3f}]; {verdict}.")
    return "\n".join([
        f"# {first.name} against {second.name}: paired bootstrap over images",
        "",
        f"Written by `{command}`. Both models' COCO keypoint results on the same images "
        f"({'with' if flip else 'without'} the flip test); every bootstrap round draws as many images as the set "
        "holds, with replacement, and scores both models on that same draw. The interval covers which images the "
        "set happens to hold, not the spread between training runs: each model is one run.",
        "",
        table.to_markdown(index=False),
        "",
        *readings,
        "",
    ])


def write_paired_report(table: pd.DataFrame, first: WeightsEntry, second: WeightsEntry, directory: str | Path,
                        command: str, flip: bool) -> list[Path]:
    """Write paired_<first>_vs_<second>.md and .csv into `directory`, atomically; returns their paths."""
    stem = f"paired_{first.name}_vs_{second.name}"
    csv = io.StringIO()
    table.to_csv(csv, index=False)
    return [write_text_atomic(Path(directory) / f"{stem}.md", paired_markdown(table, first, second, command, flip)),
            write_text_atomic(Path(directory) / f"{stem}.csv", csv.getvalue())]
