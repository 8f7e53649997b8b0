"""Training records: one JSON line per epoch (`log.jsonl`), optional TensorBoard scalars, and the plot of the
training curves that the CLI and the notebooks both draw from the log."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from workbench.common.errors import WorkbenchError
from workbench.common.files import write_atomic, write_text_atomic


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record as a JSON line and sync it, so a crash loses at most the line being written."""
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a log, in order; a record repeated for the same epoch (re-run after a resume) counts
    once, its last version."""
    path = Path(path)
    if not path.is_file():
        raise WorkbenchError(f"training log not found: {path}. Pass the log.jsonl of a run.")
    by_epoch: dict[int, dict[str, Any]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise WorkbenchError(f"{path} line {number} is not JSON. Remove the damaged line.") from None
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            raise WorkbenchError(f"{path} line {number} is not an epoch record (no whole-number \"epoch\"). "
                                 "Remove the line.")
        by_epoch[record["epoch"]] = record
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def truncate_log(path: str | Path, last_epoch: int) -> None:
    """Drop records after epoch `last_epoch` (1-based), e.g. written after the checkpoint a run resumes from."""
    path = Path(path)
    if path.is_file():
        kept = [r for r in read_log(path) if r["epoch"] <= last_epoch]
        write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


def plot_training(log: str | Path, output: str | Path, title: str | None = None) -> Path:
    """Draw the curves of a run's log into a PNG: training loss and learning rate per epoch, and the validation
    AP where it was measured. Returns the PNG's path. Drawn without pyplot (no global figure registry)."""
    records = read_log(log)
    if not records:
        raise WorkbenchError(f"{log} has no epochs yet: plot once the first epoch is done.")
    epochs = [r["epoch"] for r in records]
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    loss_axis, ap_axis = figure.subplots(1, 2)
    loss_axis.plot(epochs, [r["loss"] for r in records], marker=".", color="tab:blue")
    loss_axis.set(xlabel="epoch", ylabel="training loss (heatmap MSE)", yscale="log")
    lr_axis = loss_axis.twinx()
    lr_axis.plot(epochs, [r["lr"] for r in records], color="tab:gray", linestyle="--", linewidth=1)
    lr_axis.set_yscale("log")
    lr_axis.set_ylabel("learning rate (end of epoch)", color="tab:gray")
    validated = [r for r in records if r.get("AP") is not None]
    ap_axis.plot([r["epoch"] for r in validated], [100.0 * r["AP"] for r in validated], marker="o",
                 color="tab:green")
    ap_axis.set(xlabel="epoch", ylabel="validation AP (%)", xlim=loss_axis.get_xlim())
    if not validated:
        ap_axis.text(0.5, 0.5, "not validated yet", transform=ap_axis.transAxes, ha="center", color="tab:gray")
    for axis in (loss_axis, ap_axis):
        axis.xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(title or Path(log).parent.name)
    return write_atomic(output, lambda temporary: figure.savefig(temporary, dpi=100))


class TensorBoard:
    """Scalars to TensorBoard under `directory`, or nothing if `enabled` is false."""

    def __init__(self, directory: str | Path, enabled: bool) -> None:
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(directory))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for name, value in values.items():
                if value is not None:
                    self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
