"""The house keeps its layout: the README's map names rooms that exist, in an order that imports follow (a room
imports only rooms above it in the map, so no two rooms import each other, even through a third), at most six
modules lie loose at the top of `workbench/`, and every package says what lives there and what it may import."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKBENCH = ROOT / "workbench"


def _map_rooms() -> list[str]:
    """The rooms of the README's "Where things live" tree, top to bottom (faces last, in one group)."""
    section = (ROOT / "README.md").read_text().split("## Where things live", 1)[1].split("\n## ", 1)[0]
    tree = section.split("```", 2)[1]
    return [re.split(r"\s{2,}", line.strip())[0] for line in tree.splitlines()
            if line.startswith("  ") and not line.startswith("   ")]


def _room_of(path: Path) -> str:
    relative = path.relative_to(WORKBENCH)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imported_rooms(path: Path) -> set[str]:
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "workbench" and len(parts) > 1:
                rooms.add(parts[1])
    return rooms


def test_the_map_names_rooms_that_exist():
    rooms = _map_rooms()
    assert "codec.py" in rooms and "zoo/" in rooms and rooms[-1].startswith("app/")
    for entry in rooms:
        for name in entry.split():
            assert (WORKBENCH / name).exists(), f"the README's map names workbench/{name}, which does not exist"


def test_every_room_imports_only_rooms_above_it():
    groups = [[Path(name).stem for name in entry.split()] for entry in _map_rooms()]
    rank = {room: position for position, group in enumerate(groups) for room in group}
    faces = len(groups) - 1
    rank.update(__init__=faces, __main__=faces)
    graph: dict[str, set[str]] = {}
    for path in sorted(WORKBENCH.rglob("*.py")):
        room = _room_of(path)
        assert room in rank, f"{path.relative_to(ROOT)} lies in a room the README's map does not name"
        imported = _imported_rooms(path) - {room}
        graph.setdefault(room, set()).update(imported)
        for other in imported:
            assert rank[other] < rank[room] or rank[room] == faces, \
                f"{path.relative_to(ROOT)} ({room}) imports {other}, which is not above it in the map"
    finished: set[str] = set()

    def visit(room: str, path: tuple[str, ...]) -> None:
        assert room not in path, f"rooms import each other in a circle: {' -> '.join(path + (room,))}"
        if room not in finished:
            for other in graph.get(room, ()):
                visit(other, path + (room,))
            finished.add(room)

    for room in graph:
        visit(room, ())


def test_at_most_six_loose_modules_and_every_package_says_what_it_holds():
    loose = sorted(path.name for path in WORKBENCH.glob("*.py"))
    assert len(loose) <= 6, loose
    for package in sorted(path.parent for path in WORKBENCH.rglob("__init__.py")):
        docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert docstring, f"{package.relative_to(ROOT)} has no docstring"
        if package != WORKBENCH:
            assert "import" in docstring.lower(), f"{package.relative_to(ROOT)}'s docstring does not say what it may import"
