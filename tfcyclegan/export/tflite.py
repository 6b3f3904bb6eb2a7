"""TFLite (LiteRT) files: conversion with builtin operators only, int8 with a float first
convolution, operator lists, and a runner for parity checks and the translate command."""

from __future__ import annotations

import os
from typing import Mapping

import keras
import numpy as np
import tensorflow as tf

from tfcyclegan.export.graph import ExportError, translate

QUANTIZATIONS = ("float32", "float16", "int8")

TFLITE_WEIGHTS: Mapping[str, str] = {  # what the manifest says about each file's weights
    "float32": "float32",
    "float16": "float16 (dequantized to float32 when the file is loaded)",
    "int8": "int8 per output channel (dynamic range), except the first convolution: float32",
}


def convert_tflite(
    mobile: keras.Model,
    quantization: str,
    *,
    representative_images: np.ndarray | None = None,
    float32_content: bytes | None = None,
) -> bytes:
    """Converts a mobile generator (graph.mobile_generator) with TensorFlow's TFLite converter,
    builtin ops only. The file takes float32 (batch, H, W, 3) in [-1, 1], any H, W >= MIN_SIDE.

    quantization: "float32"; "float16" (weights stored as float16, computed in float32 on CPUs
    without fp16 arithmetic); "int8" (dynamic range: int8 per-channel weights, activations
    quantized on the fly, XNNPACK's fast path; the first convolution keeps float32 weights, see
    keep_first_conv_float); "int8_full" (full integer with `representative_images`; it converts
    with builtins, but int8 instance-norm statistics cost too much accuracy, see docs/mobile.md;
    not offered by export.py).
    float32_content: the float32 conversion of the same module, if already made (int8 uses its
    first convolution's weights); converted here when None.
    """
    if quantization == "int8":
        if float32_content is None:
            float32_content = convert_tflite(mobile, "float32")
        return keep_first_conv_float(convert_plain(mobile, "int8"), float32_content)
    return convert_plain(mobile, quantization, representative_images)


def mobile_function(mobile: keras.Model):
    """The TFLite graph: float32 (batch, H, W, 3) in [-1, 1] -> {"images": same shape}."""
    spec = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")
    return tf.function(lambda images: {"images": translate(mobile, images)}, input_signature=[spec])


def convert_plain(mobile: keras.Model, quantization: str, representative_images: np.ndarray | None = None) -> bytes:
    """One conversion with the converter's own settings for `quantization` (int8: every layer int8)."""
    return convert_concrete(mobile_function(mobile).get_concrete_function(), mobile, quantization, representative_images)


def convert_concrete(concrete, model: keras.Model, quantization: str, representative_images: np.ndarray | None = None) -> bytes:
    """A concrete function computed with `model`'s weights -> TFLite, builtin operators only, the
    weights frozen into constants."""
    # Keras 3 variables wrap a tf.Variable (`.value`); the converter freezes the weights into
    # constants only for tf.Variables it finds tracked, else it keeps them as uninitialized
    # TFLite resource variables (READ_VARIABLE: NaN out).
    holder = tf.Module()
    holder.weights = [weight.value for weight in model.weights]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8_full":
        if representative_images is None:
            raise ExportError("int8_full needs representative images.")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = lambda: ([image[None]] for image in representative_images)
    elif quantization != "float32":
        raise ExportError(f"Unknown TFLite quantization {quantization!r}; valid: {', '.join(QUANTIZATIONS)}")
    try:
        return converter.convert()
    except Exception as e:  # the converter raises several types; all mean the same to a user
        raise ExportError(f"TFLite conversion ({quantization}) failed: {e}") from e


def conv_weight_tensors(model) -> list:
    """The filter tensors of a ModelT's CONV_2D operators, in execution order."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    codes = [flatbuffer_utils.get_builtin_code_from_operator_code(c) for c in model.operatorCodes]
    graph = model.subgraphs[0]
    return [graph.tensors[op.inputs[1]] for op in graph.operators
            if codes[op.opcodeIndex] == schema.BuiltinOperator.CONV_2D]


def keep_first_conv_float(int8_content: bytes, float32_content: bytes) -> bytes:
    """Gives the first convolution of a dynamic-range int8 file its float32 weights back.

    The first convolution sees the image itself: quantizing its input on the fly to 8 bits
    costs more than at any other layer, for a few KB of weights (docs/mobile.md). The converter
    has no per-layer switch for dynamic-range quantization, so the weights are taken from the
    float32 conversion of the same graph and checked against the int8 ones (same shape, within
    half a quantization step per output channel).
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(int8_content))
    reference = flatbuffer_utils.read_model_from_bytearray(bytearray(float32_content))
    quantized, floats = conv_weight_tensors(model), conv_weight_tensors(reference)
    if not quantized or len(quantized) != len(floats):
        raise ExportError(f"int8 and float32 TFLite graphs differ ({len(quantized)} vs {len(floats)} convolutions).")
    q, f = quantized[0], floats[0]
    if q.type != schema.TensorType.INT8 or f.type != schema.TensorType.FLOAT32 or list(q.shape) != list(f.shape):
        raise ExportError(
            f"Unexpected first convolution in the TFLite files: {q.type}{list(q.shape)} vs {f.type}{list(f.shape)}."
        )
    weights = np.frombuffer(bytes(reference.buffers[f.buffer].data), np.float32).reshape(f.shape)
    codes = np.frombuffer(bytes(model.buffers[q.buffer].data), np.int8).reshape(q.shape)
    scale = np.asarray(q.quantization.scale, np.float32).reshape([-1] + [1] * (len(q.shape) - 1))
    if np.any(np.abs(codes * scale - weights) > scale * 0.5001 + 1e-12):
        raise ExportError("The int8 file's first convolution does not match the float32 weights.")
    old_buffer = q.buffer
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(weights.astype("<f4").tobytes(), np.uint8)
    model.buffers.append(buffer)
    q.buffer, q.type, q.quantization = len(model.buffers) - 1, schema.TensorType.FLOAT32, None
    if not any(t.buffer == old_buffer for g in model.subgraphs for t in g.tensors):
        model.buffers[old_buffer].data = None  # the int8 copy is no longer used
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def tflite_operators(content: bytes) -> list[str]:
    """The operator codes of a .tflite flatbuffer: builtin names, custom ops as 'CUSTOM:<code>'."""
    from ai_edge_litert import schema_py_generated as schema

    names = {value: key for key, value in vars(schema.BuiltinOperator).items() if key.isupper()}
    model = schema.Model.GetRootAs(content, 0)
    out = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            out.append(f"CUSTOM:{code.CustomCode().decode()}")
        else:
            out.append(names.get(builtin, f"BUILTIN_{builtin}"))
    return sorted(set(out))


def check_builtin_only(content: bytes, what: str) -> list[str]:
    ops = tflite_operators(content)
    custom = [op for op in ops if op.startswith("CUSTOM:")]
    if custom:
        raise ExportError(f"{what} needs non-builtin ops {custom} (Flex/custom ops do not run on phones).")
    return ops


class TFLiteRunner:
    """Runs a .tflite generator with LiteRT, resizing the input to each new image size.

    images: float32 (batch, H, W, 3) in [-1, 1]; returns the same shape.
    """

    def __init__(self, model_path: str | None = None, *, model_content: bytes | None = None, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(
            model_path=model_path, model_content=model_content, num_threads=num_threads or os.cpu_count() or 1
        )
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._shape = None

    @property
    def input_name(self) -> str:
        return self._input["name"]

    @property
    def output_name(self) -> str:
        return self._output["name"]

    def resize(self, shape) -> None:
        shape = tuple(int(d) for d in shape)
        if shape != self._shape:
            self.interpreter.resize_tensor_input(self._input["index"], list(shape), strict=False)
            self.interpreter.allocate_tensors()
            self._shape = shape

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, np.float32)
        self.resize(images.shape)
        self.interpreter.set_tensor(self._input["index"], images)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output["index"]).copy()
