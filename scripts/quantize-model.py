"""Derive models/all-minilm-l6-v2/model_quantized.onnx from model.onnx (run by fetch-models.sh).

The published model keeps int8 weights but dequantizes them to fp32 when it loads, so every
MatMul still runs in fp32. Folding those dequantize nodes into fp32 constants (ONNX Runtime's
basic graph optimizations) and quantizing the MatMuls dynamically (int8 weights, activations
quantized per call) makes a 10-token prompt about 3x faster on one core. Whether its answers stay
good enough is measured, not assumed: BENCHMARKS.md has the calibration of both variants.

Usage: python quantize-model.py SRC.onnx DEST.onnx
Needs onnx, onnxruntime and numpy (pinned in scripts/quantize-requirements.txt).
"""

import os
import sys
import tempfile

import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic


def main(src: str, dest: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folded = os.path.join(tmp, "folded.onnx")
        opts = ort.SessionOptions()
        # BASIC = constant folding and redundant-node removal only: no hardware-specific fusions,
        # so the result is the same on every x86-64 machine.
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = folded
        ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
        part = dest + ".part"
        quantize_dynamic(folded, part, weight_type=QuantType.QInt8)
        os.replace(part, dest)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: quantize-model.py SRC.onnx DEST.onnx")
    main(sys.argv[1], sys.argv[2])
