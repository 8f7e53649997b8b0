"""The published figures of every row of Tables 2 and 3 of the seed paper: the paper's printed rows, and the original
authors' own figures with their recount from the original code (`reference`; "table-rows" in the reports' column
names), read from `published_figures.yaml`, where every figure names its source."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

FIGURES_FILE = Path(__file__).with_name("published_figures.yaml")
G = 2**30
"""The "G" of the published GFLOPs in both counting conventions (and of every "(2^30)" column of the reports)."""
M = 2**20
"""The "M" of the Lite-HRNet README's MFLOPs ("205.2M")."""


@dataclass(frozen=True)
class PaperRow:
    """One printed row of the seed paper: `source` (a key of `sources`), params in millions, GFLOPs, COCO metrics
    in percent (`ap`, `ap50`, `ap75`, `apm`, `apl`, `ar`)."""

    source: str
    params_m: float
    gflops: float
    ap: float
    ap50: float
    ap75: float
    apm: float
    apl: float
    ar: float


@dataclass(frozen=True)
class PublishedRow:
    """Everything published about one network at one input size (H, W).

    `reference` holds the original authors' figures (the `sources` entry "reference" says where each was published)
    and their recount from the original code: params, gflops (in `unit`, "G" = 2^30 or "M" = 2^20),
    recomputed_a / recomputed_b (G = 2^30 unless unit is "M"), ap, and an optional note.
    """

    model: str
    label: str
    input_size: tuple[int, int]
    convention: str
    in_zoo: bool = True
    paper: tuple[PaperRow, ...] = ()
    reference: dict[str, Any] | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def reference_recomputed_ops(self) -> float | None:
        """The reference's recount under the row's own convention, as an operation count."""
        if not self.reference:
            return None
        value = self.reference.get(f"recomputed_{self.convention.lower()}")
        if value is None:
            return None
        return value * (M if self.reference.get("unit") == "M" else G)

    def reference_published_ops(self) -> float | None:
        """The reference's published figure, as an operation count."""
        if not self.reference:
            return None
        return self.reference["gflops"] * (M if self.reference.get("unit") == "M" else G)

    def paper_row(self, source: str) -> PaperRow | None:
        """The seed paper's printed row from `source` ("seed_table2" or "seed_table3"), if it prints one."""
        return next((row for row in self.paper if row.source == source), None)


@lru_cache(maxsize=1)
def published_rows() -> tuple[PublishedRow, ...]:
    """Every published row, in the order of `published_figures.yaml`."""
    data = yaml.safe_load(FIGURES_FILE.read_text())
    sources = dict(data["sources"])
    return tuple(
        PublishedRow(
            model=item["model"],
            label=item["label"],
            input_size=tuple(item["input_size"]),
            convention=item["convention"],
            in_zoo=item.get("in_zoo", True),
            paper=tuple(PaperRow(**row) for row in item.get("paper") or ()),
            reference=item.get("reference"),
            sources=sources,
        )
        for item in data["rows"]
    )


def published_row(model: str, input_size: tuple[int, int]) -> PublishedRow | None:
    """The published row of `model` at `input_size` (H, W), or None if no table prints one."""
    return next((r for r in published_rows() if r.model == model and r.input_size == tuple(input_size)), None)


def row_convention(model: str) -> str:
    """The counting convention the published tables use for `model` ("A" or "B"); "B" for the Lite family."""
    return next((r.convention for r in published_rows() if r.model == model), "B")


def gap_explanations(recounts: dict[tuple[str, tuple[int, int]], float], threshold_percent: float = 10.0) -> list[str]:
    """One Markdown sentence per row whose recount (operations under the row's convention, keyed by (model, (H, W)))
    differs from the seed paper's printed GFLOPs by more than `threshold_percent`, with the explanation that
    published_figures.yaml holds: the original authors' own figure, its unit, and the row's note."""
    found = []
    for (model, size), ops in recounts.items():
        row = published_row(model, size)
        if row is None:
            continue
        for paper in row.paper:
            gap = 100.0 * (ops / G - paper.gflops) / paper.gflops
            if abs(gap) <= threshold_percent:
                continue
            ref = row.reference or {}
            original = (f"the original authors publish {ref['gflops']} {ref.get('unit', 'G')}"
                        + (f" (= {row.reference_published_ops() / G:.4f} G)" if ref.get("unit") == "M" else "")
                        if ref.get("gflops") is not None else "no original figure is recorded")
            recomputed = row.reference_recomputed_ops()
            agree = (f", and their code recounted under convention {row.convention} gives {recomputed / G:.4f} G"
                     if recomputed is not None else "")
            note = f" Note from {FIGURES_FILE.name}: {ref['note']}." if ref.get("note") else ""
            table = "Table 2" if paper.source == "seed_table2" else "Table 3"
            found.append(f"**{row.label} at {size[0]}x{size[1]}: {gap:+.1f}%** against the {paper.gflops} G printed "
                         f"in the paper's {table}. The "
                         f"recount is {ops / G:.4f} G; {original}{agree}, so the gap lies in the printed figure, "
                         f"not in the count.{note}")
            break
    return found
