"""Speed benchmarks: ``python -m benchmarks.<name> [--tiny] [--json OUT]``.

train_throughput  training images/s: this project's step against a pytorch/examples-style loop
inference         ms per image: torch eager against ONNX Runtime; the demo's round trip
scaling           1 against N processes (gloo on CPU, NCCL on GPUs)
data_pipeline     the uint8 cache against decoding PNGs with PIL

Results and the commands that produced them: BENCHMARKS.md.
"""
