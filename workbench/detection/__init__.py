"""Person detectors: YOLOX-format ONNX graphs run by ONNX Runtime (yolox), and the pinned default detector file
with its lookup and checked download (download). May import `common` and `data`."""
