"""The Lite CSW-HRNet workbench: the rooms around `model` (data, codec, zoo, detection, inference, predict,
interpret, speed, evaluation, training, reports) and the faces that call them (app, notebooks, commands).

`from workbench import predict` gives `workbench.prediction.api.predict`; it is looked up on first use, so that
`python -m workbench --help` does not load torch.
"""


def __getattr__(name: str):
    if name == "predict":
        from workbench.prediction.api import predict

        return predict
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
