"""Data in: COCO keypoint files (coco), the 17 joints (keypoints), image reading (images), crop geometry and
augmentation (transforms), the top-down torch dataset (dataset). May import `common` and `codec`."""
