"""What the networks cost: parameter and FLOP counting conventions, latency, compiled paths, ONNX export and
profiling, the published figures. May import `model`, `common`, `data` and `zoo`."""
