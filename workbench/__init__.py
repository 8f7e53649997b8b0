"""The Lite CSW-HRNet workbench: data, inference, evaluation, training, complexity, app and CLI over `model`."""
