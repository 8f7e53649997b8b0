"""The complexity report: the rows of `workbench.speed.complexity.measure_rows` beside the published figures
(`workbench.speed.published`) and the project's measured APs, as Markdown, CSV and two plots (FLOPs against AP like the
paper's Figure 9, measured latency against FLOPs)."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import onnxruntime
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from workbench.speed.complexity import ComplexityRow, SpeedSettings
from workbench.speed.engines import CPU_ENGINES, CUDA_ENGINES, ENGINE_LABELS, engine_versions, machine_description
from workbench.speed.operators import breakdown_sentences, breakdown_table
from workbench.common.errors import WorkbenchError
from workbench.common.files import write_atomic
from workbench.speed.latency import Timing
from workbench.speed.published import G, M, published_row, published_rows


@dataclass
class MeasuredAP:
    """An AP the project measured itself: `model` at `input_size` (H, W), AP in percent, and where it comes from."""

    model: str
    input_size: tuple[int, int]
    ap: float
    source: str



def load_measured_ap(paths: list[str]) -> list[MeasuredAP]:
    """The project's own APs from evaluation outputs (`python -m workbench evaluate` writes `metrics.json`: "AP"
    as a fraction, the model and input size under "settings"). A file must name its model and input size."""
    found = []
    for path in map(Path, paths):
        try:
            data = json.loads(path.read_text())
            settings = data.get("settings", data)
            model, size, ap = settings["model"], tuple(int(v) for v in settings["input_size"]), data["AP"]
        except (OSError, ValueError) as error:
            raise WorkbenchError(f"cannot read metrics file {path} ({error}). Pass a metrics.json written by "
                                 "`python -m workbench evaluate`.") from None
        except (KeyError, TypeError):
            raise WorkbenchError(f"{path} lacks AP, settings.model or settings.input_size. Pass a metrics.json "
                                 "written by `python -m workbench evaluate`.") from None
        if ap is not None:
            data_name = Path(str(settings.get("annotations", path.parent.name))).stem
            found.append(MeasuredAP(model, size, float(ap) * (100.0 if ap <= 1.0 else 1.0), data_name))
    return found


def _percent(value: float | None, reference: float | None) -> float | None:
    return None if value is None or not reference else 100.0 * (value - reference) / reference


def csv_record(row: ComplexityRow, measured: list[MeasuredAP] = ()) -> dict[str, Any]:
    """One flat CSV record of `row` with its published figures; GFLOPs in units of 1e9 (fvcore) or 2^30."""
    published = published_row(row.model, row.input_size)
    recomputed = row.convention_ops()
    reference = published.reference_recomputed_ops() if published else None
    table2 = published.paper_row("seed_table2") if published else None
    table3 = published.paper_row("seed_table3") if published else None
    paper = table2 or table3
    record: dict[str, Any] = {
        "model": row.model,
        "input": f"{row.input_size[0]}x{row.input_size[1]}",
        "parameters": row.parameters,
        "fvcore GFLOPs (1e9)": round(row.fvcore / 1e9, 4),
        "convention": row.convention,
        "convention A GFLOPs (2^30)": round(row.convention_a / G, 4),
        "convention B GFLOPs (2^30)": round(row.convention_b / G, 4),
        "convention B MFLOPs (2^20)": round(row.convention_b / M, 1),
        "recomputed GFLOPs (2^30)": round(recomputed / G, 4),
        "table-rows recomputed GFLOPs (2^30)": None if reference is None else round(reference / G, 4),
        "recomputed vs table-rows (%)": _round(_percent(recomputed, reference), 2),
        "published GFLOPs (2^30)": None if not published or not published.reference
        else round(published.reference_published_ops() / G, 4),
        "paper GFLOPs": paper.gflops if paper else None,
        "recomputed vs paper (%)": _round(_percent(recomputed / G, paper.gflops if paper else None), 1),
        "paper params (M)": paper.params_m if paper else None,
        "paper AP val2017": table2.ap if table2 else None,
        "paper AP test-dev2017": table3.ap if table3 else None,
        "table-rows AP": published.reference.get("ap") if published and published.reference else None,
        "measured AP": "; ".join(f"{m.ap:.1f} ({m.source})" for m in measured
                                 if m.model == row.model and m.input_size == row.input_size) or None,
    }
    for backend, label in (("eager", "latency ms"), ("fast", "fast latency ms"), ("onnxruntime", "onnxruntime latency ms")):
        timing = row.latency.get(backend)
        record[f"{label} (median, batch 1)"] = _round(timing and timing.median_ms, 2)
        record[f"{label} (min)"] = _round(timing and timing.min_ms, 2)
        record[f"{label} (max)"] = _round(timing and timing.max_ms, 2)
    record["fast variant"] = row.fast_variant
    record["fast max abs diff"] = row.max_abs_diff.get("fast")
    record["onnxruntime max abs diff"] = row.max_abs_diff.get("onnxruntime")
    record["peak memory MB (batch 1)"] = _round(row.peak_memory and row.peak_memory / 1e6, 1)
    for backend in ("eager", "fast", "onnxruntime"):
        record[f"{backend} images/s (batch N)"] = _round(row.throughput.get(backend), 1)
    record["throughput batch N"] = row.throughput_batch
    for backend in ("eager", "fast"):
        timing = row.cuda_latency.get(backend)
        record[f"cuda {backend} latency ms (median, batch 1)"] = _round(timing and timing.median_ms, 3)
    for (engine, threads), timing in sorted(row.engine_latency.items()):
        where = "cuda events" if threads == 0 else f"{threads} threads"
        record[f"{engine} ms ({where}, median)"] = _round(timing.median_ms, 2)
        record[f"{engine} ms ({where}, min)"] = _round(timing.min_ms, 2)
        record[f"{engine} ms ({where}, max)"] = _round(timing.max_ms, 2)
    for engine, value in row.engine_throughput.items():
        record[f"{engine} images/s (batch N)"] = _round(value, 1)
    for engine, value in row.engine_peak_memory.items():
        record[f"{engine} peak resident MB"] = _round(value and value / 1e6, 1)
    for engine, value in row.max_abs_diff.items():
        if engine not in ("fast", "onnxruntime"):
            record[f"{engine} max abs diff"] = value
    for (engine, threads), value in sorted(row.engine_ratio.items()):
        record[f"{engine} time / paired baseline ({threads} threads)"] = _round(value, 3)
    for engine, note in row.engine_notes.items():
        record[f"{engine} note"] = note
    return record


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _cell(value: Any, digits: int | None = None) -> str:
    if value is None:
        return "-"
    if digits is not None and isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _sci(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


def _timing_cell(timing: Timing | None) -> str:
    return "-" if timing is None else f"{timing.median_ms:.1f} [{timing.min_ms:.1f}-{timing.max_ms:.1f}]"


def engine_table(rows: list[ComplexityRow], threads: int, size: tuple[int, int] | None = None,
                 reference: str = "lite_hrnet_18") -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-engine table at `threads` CPU threads (CUDA engines: CUDA events): per model,
    size and engine the batch-1 latency (median [min-max] ms), the time ratio to `reference` on the same engine
    and size beside the fvcore FLOPs ratio, parity, throughput and peak resident memory. The time ratio is the
    paired one (`ComplexityRow.engine_ratio`) where the row has it, else the ratio of the two medians."""
    header = ["model", "input", "engine", "ms median [min-max]", "time / " + reference, "FLOPs / " + reference,
              "max abs diff", "images/s (batch N)", "peak MB"]
    base = {(r.input_size, engine): (timing, r.fvcore) for r in rows if r.model == reference
            for (engine, t), timing in r.engine_latency.items() if t in (threads, 0)}
    lines = []
    for row in rows:
        if size is not None and row.input_size != size:
            continue
        for (engine, t), timing in sorted(row.engine_latency.items(), key=lambda item: _engine_order(item[0][0])):
            if t not in (threads, 0):
                continue
            ref = base.get((row.input_size, engine))
            ratio = row.engine_ratio.get((engine, t), ref and timing.median_ms / ref[0].median_ms)
            peak = row.engine_peak_memory.get(engine)
            lines.append([row.model, f"{row.input_size[0]}x{row.input_size[1]}", ENGINE_LABELS.get(engine, engine)
                          + (" (CUDA events)" if t == 0 else ""), _timing_cell(timing),
                          _cell(ratio, 2),
                          _cell(ref and row.fvcore / ref[1], 2), _sci(row.max_abs_diff.get(engine)),
                          _cell(row.engine_throughput.get(engine), 1), _cell(peak and peak / 1e6, 1)])
        for engine, note in row.engine_notes.items():
            lines.append([row.model, f"{row.input_size[0]}x{row.input_size[1]}", ENGINE_LABELS.get(engine, engine),
                          f"not measured: {note}", "-", "-", "-", "-", "-"])
    return header, lines


def _engine_order(engine: str) -> int:
    order = list(CPU_ENGINES + CUDA_ENGINES)
    return order.index(engine) if engine in order else len(order)


def fastest_paths(rows: list[ComplexityRow], threads: int,
                  size: tuple[int, int] = (256, 192)) -> dict[str, tuple[str, Timing]]:
    """Per model at `size`, the CPU engine with the lowest median batch-1 latency at `threads` threads."""
    found = {}
    for row in rows:
        if row.input_size != tuple(size):
            continue
        timed = [(engine, timing) for (engine, t), timing in row.engine_latency.items() if t == threads]
        if timed:
            found[row.model] = min(timed, key=lambda item: item[1].median_ms)
    return found


def fastest_sentence(rows: list[ComplexityRow], fastest: dict[str, tuple[str, Timing]], threads: int) -> str:
    """One sentence on the fastest lite_csw_hrnet and lite_hrnet_18 paths at 256x192 and their time ratio: paired
    by round when both are the same engine and the row has the paired ratio, else the ratio of the medians."""
    (e1, t1), (e2, t2) = fastest["lite_csw_hrnet"], fastest["lite_hrnet_18"]
    csw = next(row for row in rows if row.model == "lite_csw_hrnet" and row.input_size == (256, 192))
    paired = csw.engine_ratio.get((e1, threads)) if e1 == e2 else None
    how = (f"{paired:.2f} (median of per-round ratios, both timed in the same rounds)" if paired is not None else
           f"{t1.median_ms / t2.median_ms:.2f} (ratio of medians taken in different rounds; "
           "`benchmarks/speed_targets.py` pairs them by round)")
    return (f"Fastest paths at 256x192, {threads} thread(s): lite_csw_hrnet on {e1} {t1.median_ms:.1f} ms, "
            f"lite_hrnet_18 on {e2} {t2.median_ms:.1f} ms: ratio {how}.")


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def markdown_report(rows: list[ComplexityRow], settings: SpeedSettings | None, measured: list[MeasuredAP],
                    notes: list[str], command: str, breakdown: tuple[list, list[str]] | None = None) -> str:
    """The report as Markdown: method, operation counts against the published figures, latency table, the
    published rows without a model in the zoo, and the plots."""
    fvcore = version("fvcore")
    records = [csv_record(row, measured) for row in rows]
    lines = [
        "# Complexity and speed",
        "",
        f"Written by `{command}`.",
        f"Machine: {machine_description()}; {torch.get_num_threads()} PyTorch threads at start; torch "
        f"{torch.__version__}, onnxruntime {onnxruntime.__version__}"
        + "".join(f", {k} {v}" for k, v in engine_versions().items() if k not in ("torch", "onnxruntime"))
        + f", fvcore {fvcore}."
        + (f" Latency measured at {', '.join(map(str, settings.thread_counts or (settings.threads,)))} thread(s); "
           f"throughput and the legacy columns at {settings.threads}; {settings.repeats} rounds at most, "
           f"{settings.budget_s:g} s budget per thread count." if settings is not None else
           " Counts only: no latency measured (`--counts-only`)."),
        "",
        "## How the figures are counted",
        "",
        f"- **fvcore GFLOPs (1e9)**: fvcore {fvcore}'s FlopCountAnalysis on one image: one multiply-add is one flop, "
        "every call counts, batch norm, pooling and upsampling count, element-wise ops (sigmoid, mul, add) and reductions "
        "fvcore does not know (max pooling, channel mean/max) count zero. fvcore has no handle for "
        "`aten::avg_pool2d`; the project registers one that counts one flop per input element, like fvcore's own "
        "`adaptive_avg_pool2d` handle (the Lite models pool with fixed kernels where the official code pools "
        "adaptively, for ONNX).",
        "- **Convention A** (HRNet repository, G = 2^30): for every convolution and linear layer, weight count x "
        "output H x W, every call counted, nothing else.",
        "- **Convention B** (Lite-HRNet repository's torchstat, G = 2^30, M = 2^20): convolution multiply-adds "
        "(transposed convolutions at their input resolution) plus bias, batch norm (2 per element), ReLU (1 per "
        "element), max and fixed-kernel average pooling (1 per input element) and nearest upsampling (1 per output "
        "pixel); a module that runs more than once counts once.",
        "- **recomputed**: the project's count under the convention the model's published row used, against the "
        "figure recomputed from the original authors' code under that convention (the `reference` of "
        "workbench/speed/published_figures.yaml, columns \"table-rows\") and the seed paper's printed one.",
        "",
        *[f"- {note}" for note in notes],
        "",
        "## Operation counts against the published figures",
        "",
        "| model | input | params | fvcore GFLOPs | conv. | recomputed G | table-rows recomputed G | diff % | "
        "paper G | diff % | conv. B M (2^20) | conv. A G |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['model']} | {r['input']} | {r['parameters']:,} | {r['fvcore GFLOPs (1e9)']:.4f} | {r['convention']} "
            f"| {r['recomputed GFLOPs (2^30)']:.4f} | {_cell(r['table-rows recomputed GFLOPs (2^30)'], 4)} "
            f"| {_cell(r['recomputed vs table-rows (%)'], 2)} | {_cell(r['paper GFLOPs'], 2)} "
            f"| {_cell(r['recomputed vs paper (%)'], 1)} | {r['convention B MFLOPs (2^20)']:.1f} "
            f"| {r['convention A GFLOPs (2^30)']:.3f} |"
        )
    if settings is not None and any(row.latency for row in rows):
        lines += [
            "",
            f"## Latency, memory and throughput (CPU, {settings.threads} threads)",
            "",
            "Per image at batch 1, milliseconds: median [min-max] over the rounds run; eager PyTorch, the fast "
            "PyTorch path (its variant named) and ONNX Runtime were timed interleaved, one call of each per round. "
            "`max abs diff`: largest difference to eager on a random input. Peak memory: bytes PyTorch's allocator "
            "held above the weights during one eager batch-1 inference. Throughput: images per second at batch N.",
            "",
            "| model | input | eager ms | fast ms (variant) | onnxruntime ms | fast / eager | ort / eager | "
            "max abs diff fast, ort | peak MB | images/s eager, fast, ort (N) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row, r in zip(rows, records):
            eager, fast, ort = (row.latency.get(k) for k in ("eager", "fast", "onnxruntime"))
            lines.append(
                f"| {row.model} | {r['input']} | {_timing_cell(eager)} | {_timing_cell(fast)} ({row.fast_variant or '-'}) "
                f"| {_timing_cell(ort)} | {_cell(fast and eager and fast.median_ms / eager.median_ms, 2)} "
                f"| {_cell(ort and eager and ort.median_ms / eager.median_ms, 2)} "
                f"| {_sci(row.max_abs_diff.get('fast'))}, {_sci(row.max_abs_diff.get('onnxruntime'))} "
                f"| {_cell(r['peak memory MB (batch 1)'], 1)} "
                f"| {', '.join(_cell(row.throughput.get(k), 1) for k in ('eager', 'fast', 'onnxruntime'))} "
                f"({_cell(row.throughput_batch)}) |"
            )
    if settings is not None and any(row.engine_latency for row in rows):
        for threads in settings.thread_counts or (settings.threads,):
            lines += ["", f"## Latency per engine (CPU, batch 1, {threads} thread{'s' if threads > 1 else ''})", "",
                      "Every engine of one model and size timed interleaved (one call of each per round); the time "
                      "ratio is to lite_hrnet_18 on the same engine and size, beside the fvcore FLOPs ratio"
                      + (": lite_hrnet_18's engines ran in the same rounds as each model's, and the ratio is the "
                         "median of the per-round ratios (robust to the host's load drifting between models). "
                         if any(row.engine_ratio for row in rows) else
                         " (medians taken minutes apart: the host's drift between models enters the ratio). ")
                      + 
                      "Compiled: `workbench.speed.compiled` variant "
                      f"'{next((r.fast_variant for r in rows if r.fast_variant), '-')}' for every model. Peak MB: "
                      "growth of the process's peak resident memory in one batch-1 call (batch N where the "
                      "batch-1 figure was not taken).", ""]
            lines += _markdown_table(*engine_table(rows, threads))
            fastest = fastest_paths(rows, threads)
            if "lite_csw_hrnet" in fastest and "lite_hrnet_18" in fastest:
                lines += ["", fastest_sentence(rows, fastest, threads)]
    if breakdown is not None and breakdown[0]:
        shares, breakdown_notes = breakdown
        models = ["lite_csw_hrnet", "lite_hrnet_18"]
        lines += ["", "## Why the time goes where it goes (256x192, batch 1)", "",
                  "Time per inference by operator group: ONNX Runtime's kernel profiler, OpenVINO's per-layer "
                  "performance counters and PyTorch's profiler (self CPU time of eager aten operators); each "
                  "engine's operator names are mapped to shared groups (`workbench.speed.operators`).", ""]
        lines += _markdown_table(*breakdown_table(shares, models))
        lines += [""] + [" ".join(breakdown_sentences(shares, *models))] + [f"- {n}" for n in breakdown_notes]
    if any(row.cuda_latency for row in rows):
        lines += ["", "## CUDA (CUDA events, batch 1)", "", "| model | input | eager ms | fast ms | peak MB |",
                  "|---|---|---:|---:|---:|"]
        for row, r in zip(rows, records):
            lines.append(f"| {row.model} | {r['input']} | {_timing_cell(row.cuda_latency.get('eager'))} "
                         f"| {_timing_cell(row.cuda_latency.get('fast'))} "
                         f"| {_cell(row.cuda_peak_memory and row.cuda_peak_memory / 1e6, 1)} |")
    outside = [p for p in published_rows() if not p.in_zoo]
    if outside:
        lines += ["", "## Published rows without a model in the zoo", "",
                  "| row | input | params | published | AP |", "|---|---|---:|---:|---:|"]
        for p in outside:
            ref = p.reference
            lines.append(f"| {p.label} | {p.input_size[0]}x{p.input_size[1]} | {ref['params']:,} "
                         f"| {ref['gflops']} {ref['unit']} | {ref['ap']} |")
    lines += ["", "## Plots", "", f"![FLOPs against AP]({FLOPS_AP_PLOT})", "",
              f"![Latency against FLOPs]({LATENCY_PLOT})", "",
              "Sources of every published figure: workbench/speed/published_figures.yaml.", ""]
    return "\n".join(lines)


FLOPS_AP_PLOT = "complexity_flops_ap.png"
LATENCY_PLOT = "complexity_latency_flops.png"


def _figure(width: float, height: float) -> Figure:
    """A figure of the object API with its own Agg canvas: no pyplot, so no global figure registry to share
    between the app's worker threads."""
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def place_labels(axes, points: list[tuple[float, float, str]], fontsize: float = 8) -> None:
    """Annotate each (x, y, text) of `points` on `axes` at the first of a few offsets whose label box (estimated in
    display pixels) overlaps no label placed before it nor another point, so that labels of close points do not print
    over each other. Call after the axes' scales and limits are set."""
    axes.figure.canvas.draw()  # settle limits and the transform
    transform = axes.transData
    char_w, height = 0.6 * fontsize * axes.figure.dpi / 72, fontsize * axes.figure.dpi / 72 + 2
    anchors = [tuple(transform.transform((x, y))) for x, y, _ in points]
    placed: list[tuple[float, float, float, float]] = []
    order = sorted(range(len(points)), key=lambda i: (-anchors[i][1], anchors[i][0]))
    for i in order:
        x, y, text = points[i]
        px, py = anchors[i]
        width = char_w * len(text)
        scale = axes.figure.dpi / 72
        candidates = [(4, 4), (4, -4 - height / scale), (-4 - width / scale, 4), (-4 - width / scale, -4 - height / scale),
                      (4, 4 + height / scale), (4, -4 - 2 * height / scale), (4, 4 + 2 * height / scale),
                      (4, -4 - 3 * height / scale), (-4 - width / scale, 4 + height / scale),
                      (-4 - width / scale, -4 - 2 * height / scale)]
        for dx, dy in candidates:
            box = (px + dx * scale, py + dy * scale, px + dx * scale + width, py + dy * scale + height)
            clash = any(not (box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3]) for b in placed)
            clash = clash or any(box[0] - 2 < ax < box[2] + 2 and box[1] - 2 < ay < box[3] + 2
                                 for j, (ax, ay) in enumerate(anchors) if j != i)
            if not clash:
                break
        placed.append(box)
        axes.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                      arrowprops=None if (dx, dy) == (4, 4) else {"arrowstyle": "-", "lw": 0.4, "color": "0.5"})


def flops_ap_figure(rows: list[ComplexityRow], measured: list[MeasuredAP]) -> Figure:
    """Figure 9 of the paper, redrawn: GFLOPs against AP, (a) Table 2 (val2017) at 256x192, (b) Table 3
    (test-dev2017) at 384x288. Filled: the paper's printed GFLOPs; hollow: the project's recount under the row's
    convention (G = 2^30); stars: APs the project measured (`measured`, at the recount). Labels are placed apart
    (`place_labels`) where points lie close, as the two Lite models do."""
    recount = {(r.model, r.input_size): r.convention_ops() / G for r in rows}
    figure = _figure(12, 5)
    panels = figure.subplots(1, 2)
    for axes, source, size, title in ((panels[0], "seed_table2", (256, 192), "(a) COCO val2017, 256x192"),
                                      (panels[1], "seed_table3", (384, 288), "(b) COCO test-dev2017, 384x288")):
        labels = []
        for published in published_rows():
            paper = published.paper_row(source)
            if paper is None or published.input_size != size:
                continue
            point = axes.scatter(paper.gflops, paper.ap, s=40)
            labels.append((paper.gflops, paper.ap, published.label))
            if (published.model, size) in recount:
                x = recount[(published.model, size)]
                axes.scatter(x, paper.ap, s=40, facecolors="none", edgecolors=point.get_facecolor())
                axes.plot([paper.gflops, x], [paper.ap, paper.ap], color=point.get_facecolor()[0], lw=0.8)
        for m in measured:
            if m.input_size == size and (m.model, size) in recount:
                axes.scatter(recount[(m.model, size)], m.ap, marker="*", s=120, color="black")
                labels.append((recount[(m.model, size)], m.ap, f"{m.model} measured ({m.source})"))
        axes.set_xscale("log")
        axes.set_xlabel("GFLOPs (filled: paper; hollow: project recount, row's convention)")
        axes.set_ylabel("AP (%)")
        axes.set_title(title)
        axes.grid(alpha=0.3, which="both")
        if labels:
            axes.margins(x=0.15, y=0.12)
            place_labels(axes, labels)
    figure.tight_layout()
    return figure


ENGINE_MARKERS = {"eager": "o", "compiled": "s", "onnxruntime": "^", "openvino": "D", "ncnn": "v",
                  "cuda_eager": "P", "cuda_compiled": "X", "ort_cuda": "*"}


def _plot_threads(rows: list[ComplexityRow]) -> int | None:
    counts = {t for r in rows for (_, t) in r.engine_latency if t}
    return 2 if 2 in counts else max(counts, default=None)


def latency_flops_figure(rows: list[ComplexityRow]) -> Figure:
    """Measured CPU latency (ms, median, batch 1) against fvcore GFLOPs per input size, one marker per engine (at
    2 threads where measured): where an engine's points leave the FLOPs order, FLOPs mislead on that engine.
    Model labels are placed apart where points lie close (`place_labels`)."""
    sizes = sorted({r.input_size for r in rows})
    threads = _plot_threads(rows)
    figure = _figure(6.5 * max(len(sizes), 1), 5.5)
    panels = figure.subplots(1, max(len(sizes), 1), squeeze=False)
    for axes, size in zip(panels[0], sizes):
        chosen = [r for r in rows if r.input_size == size and (r.latency or r.engine_latency)]

        def point_of(r: ComplexityRow, engine: str) -> Timing | None:
            if r.engine_latency:
                return r.engine_latency.get((engine, threads))
            return r.latency.get({"compiled": "fast"}.get(engine, engine))

        for engine, marker in ENGINE_MARKERS.items():
            points = [(r.fvcore / 1e9, t.median_ms) for r in chosen if (t := point_of(r, engine)) is not None]
            if points:
                axes.scatter([p[0] for p in points], [p[1] for p in points], marker=marker,
                             label=ENGINE_LABELS.get(engine, engine), alpha=0.85)
        axes.set_xscale("log")
        axes.set_yscale("log")
        for axis in (axes.xaxis, axes.yaxis):
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FormatStrFormatter("%g"))
            axis.set_minor_formatter(NullFormatter())
        axes.set_xlabel("fvcore GFLOPs (1e9)")
        axes.set_ylabel("latency per image (ms, median, batch 1)")
        axes.set_title(f"{size[0]}x{size[1]}" + (f", {threads} thread{'s' if threads > 1 else ''}" if threads else ""))
        axes.grid(alpha=0.3, which="both")
        if chosen:
            axes.legend(fontsize=7, loc="upper left")
            axes.margins(x=0.2, y=0.15)
            labels = []
            for r in chosen:
                timed = [t.median_ms for e in ENGINE_MARKERS if (t := point_of(r, e)) is not None]
                labels.append((r.fvcore / 1e9, max(timed), r.model))
            place_labels(axes, labels)
        else:
            axes.text(0.5, 0.5, "no latency measured\n(report written with --counts-only:\nrun `python -m workbench "
                      "complexity`)", ha="center", va="center", transform=axes.transAxes)
    figure.tight_layout()
    return figure


def write_report(rows: list[ComplexityRow], directory, settings: SpeedSettings | None = None,
                 measured: list[MeasuredAP] = (), notes: list[str] = (), command: str = "",
                 breakdown: tuple[list, list[str]] | None = None) -> list:
    """Write complexity.md, complexity.csv and the two plots into `directory` (each atomically); returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    records = [csv_record(row, list(measured)) for row in rows]
    table = io.StringIO()
    fields = list(dict.fromkeys(key for record in records for key in record)) or ["model"]
    writer = csv.DictWriter(table, fieldnames=fields)
    writer.writeheader()
    writer.writerows(records)
    paths = [directory / "complexity.md", directory / "complexity.csv", directory / FLOPS_AP_PLOT,
             directory / LATENCY_PLOT]
    text = markdown_report(rows, settings, list(measured), list(notes), command, breakdown)
    write_atomic(paths[0], lambda p: p.write_text(text))
    write_atomic(paths[1], lambda p: p.write_text(table.getvalue()))
    for path, figure in ((paths[2], flops_ap_figure(rows, list(measured))), (paths[3], latency_flops_figure(rows))):
        write_atomic(path, lambda p, f=figure: f.savefig(p, dpi=120))
    return paths
