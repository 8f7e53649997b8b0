"""`CocoKeypoints`: the top-down COCO keypoint dataset (one sample per person instance).

A sample is a dict of tensors (default-collatable):
    image (3, H, W) float32, normalised;  target (17, H/4, W/4) float32 and target_weight (17,) if with_targets;
    joints (17, 2) crop pixels;  visible (17,) bool;  matrix (2, 3) float64, image pixels -> crop pixels;
    box_size (2,) padded box (w, h) in image pixels;  score (box score);  image_id;  index (instance index);
    valid (False if the image could not be read: the crop is black, target weights zero) and error (its message).
Unreadable images end in `valid=False` with the message rather than an exception inside a DataLoader worker.
Augmentation is drawn from a generator seeded by (seed, epoch, index): the same for any number of workers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from workbench.data.coco import SKIP_REASONS, Instance, InstanceSet, detection_instances, ground_truth_instances, \
    person_category, read_json
from workbench.codec import ENCODINGS, HEATMAP_STRIDE, default_sigma, encode_heatmaps
from workbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Augmentation, CropParams, box_to_center_size, \
    compose, crop_matrix, hflip_matrix, sample_crop_params, to_tensor, transform_points, warp_crop
from workbench.common.errors import WorkbenchError
from workbench.data.images import ImageReadError, read_image
from workbench.data.keypoints import FLIP_INDEX


class CocoKeypoints(Dataset):
    """Person crops from a COCO person-keypoints file and its image folder.

    Instances come from the ground-truth boxes, or from `detections` (a COCO results file) with boxes scoring at
    least `score_threshold`; `enclose_keypoints` grows ground-truth boxes to contain their labelled keypoints.
    `input_size` is (height, width); heatmaps are a quarter of it. `train=True` applies `augmentation`; otherwise
    every crop is the padded box, unrotated. Targets use `encoding` ("standard" or "unbiased", see
    `encode_heatmaps`) and `sigma` (default 2 at 256x192, 3 at 384x288). `mean` and `std` are per RGB channel for
    pixels scaled to [0, 1].
    """

    def __init__(self, annotations: str | Path, images: str | Path, input_size: tuple[int, int] = (256, 192), *,
                 detections: str | Path | None = None, score_threshold: float = 0.0, train: bool = False,
                 augmentation: Augmentation = Augmentation(), sigma: float | None = None,
                 encoding: str = "standard", with_targets: bool = True, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, seed: int = 0, apply_exif: bool = True,
                 enclose_keypoints: bool = False) -> None:
        if train and detections is not None:
            raise WorkbenchError("training needs ground-truth boxes and keypoints; drop the detection file.")
        if encoding not in ENCODINGS:
            raise WorkbenchError(f"unknown heatmap encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}.")
        self.annotation_file = Path(annotations)
        self.image_dir = Path(images)
        self.coco = read_json(annotations, "annotation file")
        self.category_id = person_category(self.coco, annotations)
        if detections is None:
            found: InstanceSet = ground_truth_instances(self.coco, annotations, enclose_keypoints)
        else:
            found = detection_instances(self.coco, annotations, detections, score_threshold)
        self.from_detections = detections is not None
        self.images = found.images
        self.instances: list[Instance] = found.instances
        self.skipped = found.skipped
        if len(input_size) != 2 or any(int(side) <= 0 or int(side) % HEATMAP_STRIDE for side in input_size):
            raise WorkbenchError(f"input size {input_size} must be (height, width), both multiples of "
                                 f"{HEATMAP_STRIDE}, e.g. (256, 192).")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = (self.input_size[0] // HEATMAP_STRIDE, self.input_size[1] // HEATMAP_STRIDE)
        self.train = train
        self.augmentation = augmentation
        self.sigma = default_sigma(self.input_size) if sigma is None else sigma
        self.encoding = encoding
        self.with_targets = with_targets
        self.mean, self.std = tuple(mean), tuple(std)
        self.seed, self.epoch = seed, 0
        self.apply_exif = apply_exif
        self._check_images_exist()
        self.boxes_missing_keypoints = sum(self.joints_outside_crop(i) for i in range(len(self.instances)))

    def _check_images_exist(self) -> None:
        if not self.image_dir.is_dir():
            raise WorkbenchError(f"image folder not found: {self.image_dir}. Pass the folder holding the images "
                                 f"of {self.annotation_file.name}.")
        names = sorted({self.images[i.image_id].file_name for i in self.instances})
        missing = [name for name in names if not (self.image_dir / name).is_file()]
        if missing:
            raise WorkbenchError(f"{len(missing)} of {len(names)} images named in {self.annotation_file.name} are "
                                 f"missing from {self.image_dir} (first: {', '.join(missing[:3])}). "
                                 "Pass the right image folder or restore the files.")

    def joints_outside_crop(self, index: int) -> bool:
        """Whether instance `index` has labelled joints outside its unaugmented crop (no model can find them)."""
        instance = self.instances[index]
        center, box_size = box_to_center_size(instance.box, self.input_size[1] / self.input_size[0])
        labelled = instance.joints[instance.joints[:, 2] > 0, :2]
        return bool(np.any(np.abs(labelled - center) > box_size / 2))

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of `epoch` (call before each training epoch)."""
        self.epoch = epoch

    def summary(self) -> str:
        """One line: instances kept and skipped by reason."""
        source = "detections" if self.from_detections else "ground-truth boxes"
        text = f"{len(self.instances)} instances from {source} in {len(self.images)} images"
        if self.skipped:
            parts = [f"{SKIP_REASONS[reason]}: {count}" for reason, count in sorted(self.skipped.items())]
            text += "; skipped: " + "; ".join(parts)
        if self.boxes_missing_keypoints:
            text += (f"; {self.boxes_missing_keypoints} ground-truth boxes leave labelled keypoints outside their "
                     "crop (enclose_keypoints=True grows them)")
        return text

    def __len__(self) -> int:
        return len(self.instances)

    def crop_params(self, index: int) -> CropParams:
        """The crop of instance `index`: the padded box, or a random draw when training."""
        instance = self.instances[index]
        center, box_size = box_to_center_size(instance.box, self.input_size[1] / self.input_size[0])
        if not self.train:
            return CropParams(center, box_size)
        rng = np.random.default_rng((self.seed, self.epoch, index))
        return sample_crop_params(center, box_size, instance.joints[:, :2], instance.joints[:, 2] > 0,
                                  self.input_size[1] / self.input_size[0], self.augmentation, rng)

    def read(self, image_id: int) -> np.ndarray:
        """The RGB uint8 image (H, W, 3) of `image_id`; raises ImageReadError if unreadable or of the wrong size."""
        info = self.images[image_id]
        image = read_image(self.image_dir / info.file_name, self.apply_exif)
        if image.shape[:2] != (info.height, info.width):
            raise ImageReadError(f"image {info.file_name} is {image.shape[1]}x{image.shape[0]} pixels but the "
                                 f"annotations say {info.width}x{info.height}. If it carries an EXIF rotation the "
                                 "annotations ignore, load with apply_exif=False; otherwise restore the original.")
        return image

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        instance = self.instances[index]
        params = self.crop_params(index)
        matrix = crop_matrix(params.center, params.box_size, self.input_size, params.rotation)
        if params.flip:
            matrix = compose(matrix, hflip_matrix(self.input_size[1]))
        joints = transform_points(instance.joints[:, :2], matrix)
        visible = instance.joints[:, 2] > 0
        if params.flip:
            joints, visible = joints[list(FLIP_INDEX)], visible[list(FLIP_INDEX)]
        error = ""
        try:
            crop = warp_crop(self.read(instance.image_id), matrix, self.input_size)
        except ImageReadError as problem:
            error = str(problem)
            crop = np.zeros((*self.input_size, 3), dtype=np.uint8)
        sample: dict[str, torch.Tensor | str] = {
            "image": to_tensor(crop, self.mean, self.std),
            "joints": torch.from_numpy(joints.astype(np.float32)),
            "visible": torch.from_numpy(visible),
            "matrix": torch.from_numpy(matrix),
            "box_size": torch.from_numpy(params.box_size.astype(np.float64)),
            "score": torch.tensor(instance.score, dtype=torch.float64),
            "image_id": torch.tensor(instance.image_id, dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
            "valid": torch.tensor(not error),
            "error": error,
        }
        if self.with_targets:
            target, weight = encode_heatmaps(joints / HEATMAP_STRIDE, visible, self.heatmap_size, self.sigma,
                                               self.encoding)
            sample["target"] = torch.from_numpy(target)
            sample["target_weight"] = torch.from_numpy(weight * (not error))
        return sample

