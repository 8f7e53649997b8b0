"""Top-down COCO keypoint data: instances (coco), crop geometry and augmentation (transforms), heatmap targets
(targets) and the torch dataset (dataset)."""
from workbench.data.dataset import CocoKeypoints
from workbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Augmentation

__all__ = ["CocoKeypoints", "Augmentation", "IMAGENET_MEAN", "IMAGENET_STD"]
