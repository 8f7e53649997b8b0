"""The model zoo: the manifest of the project's trained weights and the one loader (name + weights -> ready network,
for state dicts, official checkpoints and ONNX files). May import `model`, `common` and `data`."""
