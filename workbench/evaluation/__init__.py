"""COCO keypoint evaluation: predictions over a dataset and COCOeval metrics, the named evaluation sets, the paired
bootstrap. May import `model`, `common`, `data`, `codec`, `zoo` and `inference`."""
