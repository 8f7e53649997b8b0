"""Atomic writes: a failed write leaves the old file whole and no temporary behind."""
from __future__ import annotations

import json

import pytest
from matplotlib.figure import Figure

from workbench.common.files import write_atomic, write_json_atomic, write_text_atomic


def test_write_json_atomic_replaces_whole_files_only(tmp_path):
    path = write_json_atomic(tmp_path / "out" / "metrics.json", {"AP": 0.5})
    write_json_atomic(path, {"AP": 0.7}, indent=2)
    assert json.loads(path.read_text()) == {"AP": 0.7} and path.read_text().endswith("\n")
    with pytest.raises(TypeError):
        write_json_atomic(path, {"AP": object()})
    assert json.loads(path.read_text()) == {"AP": 0.7} and [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_write_atomic_keeps_the_suffix_for_writers_that_choose_the_format_by_it(tmp_path):
    figure = Figure(figsize=(1, 1))
    path = write_atomic(tmp_path / "plot.png", lambda temporary: figure.savefig(temporary))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_failing_writer_leaves_the_old_text(tmp_path):
    path = write_text_atomic(tmp_path / "report.md", "old")

    def fail(temporary):
        temporary.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.md"]
