"""People drawn on the picture with OpenCV (fast enough for every frame of a video): each person's box, limbs and
joints in one colour, chosen by its track id (or its rank in a photo) so that a person keeps its colour across
frames, and its id or rank written at the box's corner."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from matplotlib import colormaps

from workbench.data.keypoints import SKELETON
from workbench.prediction.people import Person

KEYPOINT_THRESHOLD = 0.3
"""Joints scoring below this are not drawn, nor are limbs that touch them."""
PALETTE = [tuple(int(255 * c) for c in colormaps["tab20"](i)[:3]) for i in range(20)]
"""Person colours (RGB), tab20: neighbouring ids get distinguishable colours."""


def person_colour(index: int) -> tuple[int, int, int]:
    """The RGB colour of person (track id or rank) `index`."""
    return PALETTE[(index * 7) % len(PALETTE)]


def draw_people(pixels: np.ndarray, people: Sequence[Person], *, highlight: int | None = None,
                threshold: float = KEYPOINT_THRESHOLD) -> np.ndarray:
    """A copy of the RGB image (H, W, 3) with every person drawn; person `highlight` (an index into `people`) gets
    a thicker box. Line widths follow the image size."""
    canvas = np.ascontiguousarray(pixels.copy())
    scale = max(canvas.shape[:2]) / 640.0
    thickness = max(1, int(round(2 * scale)))
    for rank, person in enumerate(people):
        label = person.track_id if person.track_id is not None else rank
        colour = person_colour(label)
        x, y, w, h = (int(round(v)) for v in person.box)
        cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, thickness * (3 if rank == highlight else 1))
        visible = person.keypoint_scores >= threshold
        points = np.round(person.keypoints).astype(int)
        for a, b in SKELETON:
            if visible[a] and visible[b]:
                cv2.line(canvas, tuple(points[a]), tuple(points[b]), colour, thickness + 1, cv2.LINE_AA)
        for point in points[visible]:
            cv2.circle(canvas, tuple(point), thickness + 2, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(canvas, tuple(point), thickness + 1, colour, -1, cv2.LINE_AA)
        text = f"#{label}"
        font_scale = 0.5 * max(scale, 0.6)
        (text_w, text_h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = max(y - text_h - 6, 0)
        cv2.rectangle(canvas, (x, top), (x + text_w + 6, top + text_h + 6), colour, -1)
        cv2.putText(canvas, text, (x + 3, top + text_h + 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return canvas
