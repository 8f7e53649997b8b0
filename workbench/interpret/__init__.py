"""Looking inside the networks: drawn figures, Grad-CAM, weight-map statistics and their plots.
May import `model`, `common`, `data`, `codec`, `zoo` and `inference`."""
