"""The Complexity tab: the complexity report's table and plots, read from the report files or computed on demand.

On demand ("quick"), each chosen model is built untrained at the chosen input size and measured here: parameters,
fvcore GFLOPs (1e9), the two published counting conventions A and B (G = 2^30), and the median forward latency at
batch 1 on this machine; the paper's printed values stand beside them. The full report (`python -m workbench
complexity`) writes reports/complexity.csv and its PNG plots, which this tab reads.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import torch

from model import INPUT_SIZES, build_model, model_names
from workbench import visualize
from workbench.app.analysis import forward_latency
from workbench.app.messages import readable
from workbench.complexity import convention_a_flops, convention_b_flops, count_parameters, fvcore_flops
from workbench.errors import WorkbenchError
from workbench.paths import reports_dir

QUICK_MODELS = ("lite_csw_hrnet", "lite_hrnet_18", "mobilenetv2", "shufflenetv2")
REPORT_CSV = "complexity.csv"
G = 2 ** 30
LATENCY_REPEATS = 10


def read_report(directory: str | Path | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The report's table (reports/complexity.csv) and its PNG plots; WorkbenchError if the report is missing."""
    folder = Path(directory or reports_dir())
    path = folder / REPORT_CSV
    if not path.is_file():
        raise WorkbenchError(f"no complexity report at {path}. Write it with `python -m workbench complexity`, "
                             "or compute a quick one here.")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise WorkbenchError(f"{path} is not a readable CSV table ({error}). Rewrite it with "
                             "`python -m workbench complexity`.") from None
    return table, [str(p) for p in sorted(folder.glob("*.png")) if "complex" in p.name or "latency" in p.name]


def quick_report(names: list[str], input_size: tuple[int, int] = (256, 192),
                 repeats: int = LATENCY_REPEATS) -> pd.DataFrame:
    """Measure each model of `names` at `input_size` (H, W): one row per model."""
    if not names:
        raise WorkbenchError("no models chosen. Tick at least one model.")
    rows = []
    for name in names:
        with torch.random.fork_rng(devices=[]):
            network = build_model(name, input_size=input_size).eval()
        rows.append({
            "model": name,
            "input": f"{input_size[0]}x{input_size[1]}",
            "parameters": count_parameters(network),
            "fvcore GFLOPs (1e9)": round(fvcore_flops(network, input_size) / 1e9, 4),
            "convention A GFLOPs (2^30)": round(convention_a_flops(network, input_size) / G, 4),
            "convention B GFLOPs (2^30)": round(convention_b_flops(network, input_size) / G, 4),
            "latency ms (median, batch 1)": round(forward_latency(network, torch.zeros(1, 3, *input_size), repeats), 1),
        })
    return pd.DataFrame(rows)


def complexity_plot(table: pd.DataFrame) -> np.ndarray:
    """Measured latency against fvcore GFLOPs and against parameters, one labelled point per row (H, W, 3)."""
    return visualize.figure_to_array(visualize.complexity_figure(
        table["model"].tolist(), table["fvcore GFLOPs (1e9)"].to_numpy(), table["parameters"].to_numpy(),
        table["latency ms (median, batch 1)"].to_numpy()))


def build() -> None:
    """The tab's components and events, inside an open gr.Tab."""
    gr.Markdown(__doc__.split("\n\n")[1].replace("\n", " "))
    with gr.Row():
        names = gr.CheckboxGroup(model_names(), value=list(QUICK_MODELS), label="Models (quick mode)")
        size = gr.Dropdown([f"{h}x{w}" for h, w in INPUT_SIZES], value="256x192", label="Input size (quick mode)")
    with gr.Row():
        compute = gr.Button("Compute now (quick)", variant="primary")
        read = gr.Button("Read the report files")
    table = gr.Dataframe(label="Complexity", interactive=False)
    plots = gr.Gallery(label="Plots", columns=2, height=460, object_fit="contain", format="png")

    def computed(chosen: list[str], size_text: str):
        height, width = (int(v) for v in size_text.split("x"))
        result = quick_report(list(chosen), (height, width))
        return result, [(complexity_plot(result), "latency against FLOPs and parameters")]

    compute.click(readable(computed), [names, size], [table, plots], api_name="complexity")
    read.click(readable(read_report), None, [table, plots], api_name="complexity_report")
