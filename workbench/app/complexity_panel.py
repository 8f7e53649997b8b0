"""The Complexity tab: the complexity report's table and plots, computed on demand or read from the report files.

On demand, `workbench.speed.complexity` counts the chosen models at one input size (parameters, fvcore GFLOPs, the GFLOPs
of each published row's convention) and, when asked, times them in its quick mode (eager PyTorch, the fast PyTorch
path and ONNX Runtime at batch 1 on this machine, interleaved; CUDA too when present); the table is the report's
own CSV record, with the paper's printed parameters, GFLOPs and AP beside the measured ones. The full report
(`python -m workbench complexity`) writes reports/complexity.csv and its plots, which this tab reads.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from model import INPUT_SIZES, model_names
from workbench.interpret import drawing
from workbench.app.messages import readable
from workbench.speed.complexity import QUICK_SPEED, SpeedSettings, measure_rows
from workbench.reports.complexity import FLOPS_AP_PLOT, LATENCY_PLOT, csv_record, flops_ap_figure, latency_flops_figure
from workbench.common.errors import WorkbenchError
from workbench.common.paths import reports_dir

QUICK_MODELS = ("lite_csw_hrnet", "lite_hrnet_18", "mobilenetv2", "shufflenetv2")
REPORT_CSV = "complexity.csv"


def read_report(directory: str | Path | None = None) -> tuple[pd.DataFrame, str | None, str | None]:
    """The report's table (complexity.csv) and the paths of its two plots, FLOPs against AP and latency against
    FLOPs (None where missing); WorkbenchError if the table is missing or unreadable."""
    folder = Path(directory or reports_dir())
    path = folder / REPORT_CSV
    if not path.is_file():
        raise WorkbenchError(f"no complexity report at {path}. Write it with `python -m workbench complexity`, "
                             "or compute one here.")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise WorkbenchError(f"{path} is not a readable CSV table ({error}). Rewrite it with "
                             "`python -m workbench complexity`.") from None
    flops_ap, latency = ((str(folder / name) if (folder / name).is_file() else None)
                         for name in (FLOPS_AP_PLOT, LATENCY_PLOT))
    return table, flops_ap, latency


def _pixels(figure: Figure) -> np.ndarray:
    """Render a figure of `workbench.reports.complexity` to RGB (H, W, 3). The figures are built with the object API,
    outside pyplot's global registry, so nothing is left to close and worker threads share no state."""
    return drawing.figure_to_array(figure)


def quick_report(names: list[str], input_size: tuple[int, int] = (256, 192), timing: bool = True,
                 speed: SpeedSettings | None = None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | None]:
    """Count (and, with `timing`, time in the quick mode) each model of `names` at `input_size` (H, W): the report's
    records as a table without its empty columns, and its plots as RGB arrays: FLOPs against AP, and latency
    against FLOPs (None unless timed).

    `speed` replaces the quick-mode settings (default: `QUICK_SPEED` on this process's PyTorch thread count).
    """
    if not names:
        raise WorkbenchError("no models chosen. Tick at least one model.")
    settings = (speed or dataclasses.replace(QUICK_SPEED, threads=torch.get_num_threads())) if timing else None
    rows, _ = measure_rows(list(names), [tuple(input_size)], settings)
    table = pd.DataFrame([csv_record(row) for row in rows]).dropna(axis=1, how="all")
    return table, _pixels(flops_ap_figure(rows, [])), _pixels(latency_flops_figure(rows)) if timing else None


def build() -> None:
    """The tab's components and events, inside an open gr.Tab."""
    gr.Markdown(__doc__.split("\n\n")[1].replace("\n", " "))
    with gr.Row():
        names = gr.CheckboxGroup(model_names(), value=list(QUICK_MODELS), label="Models")
        with gr.Column():
            size = gr.Dropdown([f"{h}x{w}" for h, w in INPUT_SIZES], value="256x192", label="Input size")
            timing = gr.Checkbox(True, label="Measure latency (quick mode: about 15 s per model)")
    with gr.Row():
        compute = gr.Button("Compute now", variant="primary")
        read = gr.Button("Read the report files")
    table = gr.Dataframe(label="Complexity (the report's columns)", interactive=False)
    flops_ap = gr.Image(label="GFLOPs against AP (the paper's Figure 9; hollow: this project's recount)",
                        format="png", interactive=False, buttons=["download", "fullscreen"])
    latency = gr.Image(label="Measured latency against FLOPs", format="png", interactive=False,
                       buttons=["download", "fullscreen"])

    def computed(chosen: list[str], size_text: str, timed: bool, progress=gr.Progress(track_tqdm=True)):
        height, width = (int(v) for v in size_text.split("x"))
        return quick_report(list(chosen), (height, width), timed)

    compute.click(readable(computed), [names, size, timing], [table, flops_ap, latency], api_name="complexity")
    read.click(readable(read_report), None, [table, flops_ap, latency], api_name="complexity_report")
