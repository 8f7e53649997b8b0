"""Person ids across video frames: each person of a frame takes the id of the person of the previous frame whose box
overlaps it most (greedy, best overlap first, box IoU at least `min_iou`), as mmpose's video demo does; the others
get new ids. Ids are never reused, so a colour keyed on the id stays with one person."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workbench.prediction.people import Person


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU (N, M) between boxes (N, 4) and (M, 4), each x, y, w, h in pixels."""
    a = np.asarray(first, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(second, dtype=np.float64).reshape(-1, 4)
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    bottom = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    overlap = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - overlap
    return np.where(union > 0, overlap / np.maximum(union, 1e-12), 0.0)


class Tracker:
    """Assigns `track_id` to the people of consecutive frames (see the module docstring)."""

    def __init__(self, min_iou: float = 0.3) -> None:
        self.min_iou = min_iou
        self.previous: list[Person] = []
        self.next_id = 0

    def update(self, people: Sequence[Person]) -> list[Person]:
        """Set `track_id` on each person of the new frame (in place) and return them."""
        ious = box_iou([p.box for p in people], [p.box for p in self.previous]) if people and self.previous else \
            np.zeros((len(people), len(self.previous)))
        taken: set[int] = set()
        for flat in np.argsort(-ious, axis=None, kind="stable"):
            row, column = np.unravel_index(flat, ious.shape)
            if ious[row, column] < self.min_iou:
                break
            if people[row].track_id is None and column not in taken:
                people[row].track_id = self.previous[column].track_id
                taken.add(column)
        for person in people:
            if person.track_id is None:
                person.track_id = self.next_id
                self.next_id += 1
        self.previous = list(people)
        return list(people)
