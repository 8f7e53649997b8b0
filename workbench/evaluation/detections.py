"""Person boxes for evaluation from a detector instead of a detection file: every image of an annotation file
through `workbench.detection`, as COCO detection results that the top-down dataset reads like any detection file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm import tqdm

from workbench.common.errors import WorkbenchError
from workbench.data.coco import image_table, person_category, read_json
from workbench.data.images import read_image
from workbench.detection.yolox import PersonDetector


def detect_people(annotations: str | Path, images: str | Path, detector: PersonDetector,
                  progress: bool = True) -> list[dict[str, Any]]:
    """COCO detection results ({image_id, category_id, bbox x y w h in pixels, score}) of `detector` on every image
    of the annotation file; an image that cannot be read is reported once and gets no box."""
    coco = read_json(annotations, "annotation file")
    category = person_category(coco, annotations)
    results = []
    for info in tqdm(image_table(coco, annotations).values(), desc="detect", unit="image", disable=not progress):
        try:
            pixels = read_image(Path(images) / info.file_name)
        except WorkbenchError as error:
            print(f"warning: no detections for image {info.id}: {error}")
            continue
        found = detector.detect(pixels)
        results += [{"image_id": info.id, "category_id": category, "bbox": [round(float(v), 2) for v in box],
                     "score": round(float(score), 5)} for box, score in zip(found.boxes, found.scores)]
    return results
