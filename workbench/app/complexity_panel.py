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

QUICK_SECONDS_PER_MODEL = "about 5-25 s"
"""What "Compute now" costs per model in the quick mode, measured with `quick_report` one model at a time on a 2-core
CPU: 22-23 s for lite_csw_hrnet and lite_hrnet_18, 5 s for mobilenetv2 and shufflenetv2 at 256x192 (the four
default models together 50 s at 384x288); longer while other work shares the cores."""
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


LATENCY_PREFIXES = ("latency ms", "fast latency ms", "onnxruntime latency ms", "eager ms", "onnxruntime ms")


def latency_note(table: pd.DataFrame) -> str:
    """A line for the panel: whether `table` (the report's CSV) holds measured latency, and how to get it if not."""
    timed = [c for c in table.columns if c.startswith(LATENCY_PREFIXES) and table[c].notna().any()]
    if timed:
        return ("Latency measured: see the report's header (reports/complexity.md) for the machine, versions and "
                "threads.")
    return ("**This report holds no latency**: it was written with `--counts-only`, so the latency plot is empty. "
            "Run `python -m workbench complexity` (or `--quick`) to measure it, or press Compute now.")


def read_report_with_note(directory: str | Path | None = None):
    """`read_report` plus the `latency_note` of its table, for the tab."""
    table, flops_ap, latency = read_report(directory)
    return table, flops_ap, latency, latency_note(table)


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
            timing = gr.Checkbox(True, label=f"Measure latency (quick mode: eager, compiled and ONNX Runtime; "
                                             f"{QUICK_SECONDS_PER_MODEL} per model on a 2-core CPU)")
    with gr.Row():
        compute = gr.Button("Compute now", variant="primary")
        read = gr.Button("Read the report files")
    note = gr.Markdown("")
    table = gr.Dataframe(pd.DataFrame({"nothing loaded yet: press Compute now or Read the report files": []}),
                         label="Complexity (the report's columns)", interactive=False)
    flops_ap = gr.Image(label="GFLOPs against AP (the paper's Figure 9; hollow: this project's recount)",
                        format="png", interactive=False, buttons=["download", "fullscreen"])
    latency = gr.Image(label="Measured latency against FLOPs", format="png", interactive=False,
                       buttons=["download", "fullscreen"])

    def computed(chosen: list[str], size_text: str, timed: bool, progress=gr.Progress(track_tqdm=True)):
        height, width = (int(v) for v in size_text.split("x"))
        found = quick_report(list(chosen), (height, width), timed)
        return *found, latency_note(found[0]) if timed else "Counted only (latency not measured: tick the box)."

    # heavy: minutes of CPU per call, so private (not in the public API) and one at a time
    compute.click(readable(computed), [names, size, timing], [table, flops_ap, latency, note], api_name="complexity",
                  api_visibility="private", concurrency_limit=1)
    read.click(readable(read_report_with_note), None, [table, flops_ap, latency, note], api_name="complexity_report")
