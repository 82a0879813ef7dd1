"""Images to logits to scores: the inference engine (device, backend, fast paths), ONNX Runtime, torchrun sharding, aggregations and metrics."""
