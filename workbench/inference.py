"""Top-down inference: crops -> heatmaps (with flip test) -> keypoints in image pixels; rescoring and OKS NMS.

A "model" here is any callable taking a normalised float tensor (N, 3, H, W) and returning heatmaps (N, 17, H/4, W/4):
a torch module from `model.build_model`, or `workbench.zoo.checkpoints.OnnxModel`.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from model import record_weight_maps
from workbench.data.coco import box_problem
from workbench.codec import combine_flip, decode_heatmaps, heatmap_to_image
from workbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, box_to_center_size, crop_matrix, to_tensor, \
    warp_crop
from workbench.common.errors import WorkbenchError
from workbench.data.images import read_image
from workbench.data.keypoints import FLIP_INDEX, OKS_SIGMAS

Model = Callable[[torch.Tensor], torch.Tensor]


def model_device(model: Model) -> torch.device:
    """Where a torch module's parameters live (CPU for anything else)."""
    if isinstance(model, torch.nn.Module):
        parameter = next(model.parameters(), None)
        if parameter is not None:
            return parameter.device
    return torch.device("cpu")


@torch.inference_mode()
def predict_heatmaps(model: Model, images: torch.Tensor, flip: bool = True, *, weight_maps: bool = False
                     ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Heatmaps (N, 17, h, w) float32 on the CPU for normalised crops (N, 3, H, W), averaged with the flip test.

    With `weight_maps`, returns (heatmaps, maps): also the weight maps that the unflipped pass computed, by probe
    name (`model.probes`; float32 on the CPU, batch first), read by hooks around that one call, so no extra pass
    runs; empty for models without weighting functions and for models that are not torch modules. The hooks live on
    the model for the call, so callers sharing a model between threads must hold its lock.
    """
    images = images.to(model_device(model))
    probing = weight_maps and isinstance(model, torch.nn.Module)
    with record_weight_maps(model) if probing else nullcontext({}) as maps:
        heatmaps = model(images).float()
    if flip:
        heatmaps = combine_flip(heatmaps, model(images.flip(3)).float(), FLIP_INDEX)
    if weight_maps:
        return heatmaps.cpu(), {name: value.float().cpu() for name, value in maps.items()}
    return heatmaps.cpu()


def rescore(box_scores: np.ndarray, joint_scores: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """Instance scores (N,): box score times the mean of the joint scores above `threshold` (0 if none is)."""
    confident = joint_scores > threshold
    counts = confident.sum(axis=1)
    means = np.where(counts > 0, (joint_scores * confident).sum(axis=1) / np.maximum(counts, 1), 0.0)
    return np.asarray(box_scores) * means


def oks_to_many(keypoints: np.ndarray, area: float, others: np.ndarray, other_areas: np.ndarray,
                sigmas: np.ndarray = OKS_SIGMAS) -> np.ndarray:
    """OKS (M,) between one pose (K, 2) and poses (M, K, 2), scaled by the mean of the two areas (pixels^2)."""
    variances = (2.0 * sigmas) ** 2
    squared = ((others - keypoints[None]) ** 2).sum(axis=2)
    scale = (area + np.asarray(other_areas))[:, None] / 2.0 + np.spacing(1)
    return np.exp(-squared / variances[None] / scale / 2.0).mean(axis=1)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, threshold: float = 0.9) -> np.ndarray:
    """Greedy NMS over the poses of one image: indices to keep, best first.

    keypoints (N, K, 2) image pixels, scores (N,), areas (N,) pixels^2; a pose is dropped if its OKS with a kept,
    higher-scoring pose exceeds `threshold`.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    while order.size:
        best, order = order[0], order[1:]
        keep.append(best)
        if order.size:
            order = order[oks_to_many(keypoints[best], areas[best], keypoints[order], areas[order]) <= threshold]
    return np.array(keep, dtype=np.int64)


@dataclass
class PoseEstimate:
    """One person: keypoints (17, 2) and scores (17,) in image pixels, the heatmaps (17, h, w), the crop the model
    saw (H, W, 3) RGB uint8, `matrix` (2, 3) mapping image pixels to crop pixels, and the box (x, y, w, h) used;
    `weight_maps` by probe name (batch dimension removed) when asked for, else None."""

    keypoints: np.ndarray
    scores: np.ndarray
    heatmaps: np.ndarray
    crop: np.ndarray
    matrix: np.ndarray
    box: np.ndarray
    weight_maps: dict[str, np.ndarray] | None = None


def crop_people(pixels: np.ndarray, boxes: np.ndarray, input_size: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops (N, H, W, 3) uint8 of the person boxes (N, 4) x, y, w, h (image pixels), each padded and brought to
    the input's aspect ratio as in evaluation, their crop matrices (N, 2, 3) and box sizes (N, 2) in image pixels."""
    crops, matrices, sizes = [], [], []
    for box in boxes:
        center, size = box_to_center_size(box, input_size[1] / input_size[0])
        matrices.append(crop_matrix(center, size, input_size))
        crops.append(warp_crop(pixels, matrices[-1], input_size))
        sizes.append(size)
    if not crops:
        return np.zeros((0, *input_size, 3), np.uint8), np.zeros((0, 2, 3)), np.zeros((0, 2))
    return np.stack(crops), np.stack(matrices), np.stack(sizes)


def estimate_poses(model: Model, pixels: np.ndarray, boxes: np.ndarray, *, input_size: tuple[int, int] | None = None,
                   flip: bool = True, decode: str = "standard", mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD, weight_maps: bool = False,
                   batch_size: int = 16) -> list[PoseEstimate]:
    """The pose of the person in each box (N, 4) x, y, w, h of an RGB image (H, W, 3), through the network in
    batches of `batch_size` crops; with `weight_maps`, each estimate also holds its crop's weight maps, read during
    the unflipped pass. `input_size` (H, W) defaults to the model's `input_size` attribute, else 256x192."""
    input_size = tuple(input_size or getattr(model, "input_size", (256, 192)))
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    crops, matrices, _ = crop_people(pixels, boxes, input_size)
    estimates = []
    for start in range(0, len(crops), batch_size):
        images = torch.stack([to_tensor(crop, mean, std) for crop in crops[start:start + batch_size]])
        probed: dict[str, torch.Tensor] = {}
        if weight_maps:
            heatmaps, probed = predict_heatmaps(model, images, flip, weight_maps=True)
        else:
            heatmaps = predict_heatmaps(model, images, flip)
        heatmaps = heatmaps.numpy()
        coords, scores = decode_heatmaps(heatmaps, decode)
        keypoints = heatmap_to_image(coords, matrices[start:start + len(images)])
        for index in range(len(images)):
            maps = {name: value[index].numpy() for name, value in probed.items()} if weight_maps else None
            estimates.append(PoseEstimate(keypoints[index], scores[index], heatmaps[index], crops[start + index],
                                          matrices[start + index], boxes[start + index], maps))
    return estimates


def estimate_pose(model: Model, image: str | Path | np.ndarray, box: Sequence[float] | None = None, *,
                  input_size: tuple[int, int] | None = None, flip: bool = True, decode: str = "standard",
                  mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                  weight_maps: bool = False) -> PoseEstimate:
    """The pose of the person in `box` (x, y, w, h image pixels; default: the whole image) of one image; with
    `weight_maps`, also the weight maps of the unflipped pass (see `predict_heatmaps`).

    `image` is a path or an array (RGB, RGBA or grayscale; see `workbench.data.images.read_image`); `input_size` is the
    model's (height, width), by default its `input_size` attribute (torch models from `build_model` and OnnxModel
    have one), else (256, 192). Raises WorkbenchError for an empty box or one wholly outside the image.
    """
    input_size = tuple(input_size or getattr(model, "input_size", (256, 192)))
    pixels = read_image(image)
    height, width = pixels.shape[:2]
    box = np.array([0.0, 0.0, width, height] if box is None else box, dtype=np.float64)
    if box.shape != (4,):
        raise WorkbenchError(f"box {box.tolist()} must be four numbers (x, y, w, h) in image pixels.")
    problem = box_problem(box, width, height)
    if problem:
        raise WorkbenchError(f"box {box.tolist()} is empty or wholly outside the {width}x{height} image "
                             f"({problem}). Pass (x, y, w, h) overlapping the image, or no box for the whole image.")
    return estimate_poses(model, pixels, box[None], input_size=input_size, flip=flip, decode=decode, mean=mean,
                          std=std, weight_maps=weight_maps)[0]
