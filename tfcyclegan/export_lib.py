"""Export trained generators for TF Serving (SavedModel) and phones (TFLite / LiteRT).

    <export_dir>/manifest.json                      every export in this folder, with parity figures
    <export_dir>/<name>_a2b/<version>/              a SavedModel in the layout TF Serving loads
        saved_model.pb, variables/, assets.extra/tfcyclegan.json (this model's manifest entry)
    <export_dir>/<name>_a2b.<quantization>.tflite   float32, float16 or int8 (dynamic range)
    (and the same for _b2a)

The export graph is not the Keras model: `ExportGenerator` copies the trained weights into its
own variables (stored once: the SavedModel's variables are the float32 parameter bytes) and
re-implements the generator with plain TF ops in two numerically equivalent formulations:

- "serving" (SavedModel): tf.pad REFLECT and conv2d_transpose, which TensorFlow runs fast.
- "mobile" (TFLite): reflection padding built from slices and concatenations, each
  stride-2 transposed convolution as four phase convolutions interleaved by depth_to_space,
  and the last convolution (3 output channels) as a stride-2 convolution computing 2x2 output
  blocks (12 channels) followed by depth_to_space, which XNNPACK runs 2.5x faster.
  A plain conversion lowers those layers to MIRROR_PAD and to a TRANSPOSE_CONV whose output
  shape is computed at run time; XNNPACK (LiteRT's CPU delegate) takes neither, so the graph
  fell apart into ~22 delegate partitions with the two transposed convolutions on the slow
  built-in kernel (its dynamic-range int8 "hybrid" version is slower still, ~3.5 s at 256 px).
  Instance norm lowers to MEAN, SQUARED_DIFFERENCE, RSQRT, SUB, MUL, all delegated, and was
  never the bottleneck. The mobile graph is one XNNPACK partition (see benchmarks/export_latency.py).

Both formulations are size-agnostic: images of any H, W >= MIN_SIDE are reflect-padded at the
bottom/right to a multiple of 4 inside the graph and the output is cropped back.

Every export is verified before it is put in place: the SavedModel is reloaded and compared with
the Keras generator at two sizes (one not divisible by 4), and every TFLite file is run with
LiteRT's interpreter at the export size and after resize_tensor_input to the second size and
compared with the SavedModel (PARITY below). A failure raises ExportError and leaves no file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
import time
from typing import Callable, Iterable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfcyclegan import checkpoint as checkpoint_lib
from tfcyclegan.config import ModelConfig, TrainConfig
from tfcyclegan.layers import reflect_pad_slices

FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = ("float32", "float16", "int8")
DIRECTIONS = ("a2b", "b2a")
MANIFEST_FILE = "manifest.json"
METADATA_FILE = os.path.join("assets.extra", "tfcyclegan.json")
MIN_SIDE = 8  # smallest H and W a generator accepts (two downsamplings, then a reflect pad of 1)
KERAS_TOLERANCE = 1e-5  # SavedModel vs Keras, max abs difference on the [-1, 1] scale


@dataclasses.dataclass(frozen=True)
class Parity:
    """The bound a TFLite file must meet against the SavedModel on the [-1, 1] scale."""

    metric: str  # "max_abs" (at most `bound`) or "psnr_db" (at least `bound`, peak-to-peak 2.0)
    bound: float


PARITY: Mapping[str, Parity] = {
    "float32": Parity("max_abs", 1e-3),
    "float16": Parity("max_abs", 2e-2),
    "int8": Parity("psnr_db", 30.0),
}


TFLITE_WEIGHTS: Mapping[str, str] = {  # what the manifest says about each file's weights
    "float32": "float32",
    "float16": "float16 (dequantized to float32 when the file is loaded)",
    "int8": "int8 per output channel (dynamic range), except the first convolution: float32",
}


class ExportError(RuntimeError):
    """An export cannot be made or failed its verification; the message says which and why."""


# -- the export graph ------------------------------------------------------------------------


def _phase_kernels(kernel):
    """Splits a 3x3 stride-2 'same' transposed-conv kernel into the four output phases.

    kernel: (3, 3, out, in) as Keras stores it. Output pixel (2m + a, 2n + b) of the transposed
    convolution only sees inputs m - 1 and m (rows) and n - 1 and n (columns):
      even rows take tap 2 from row m - 1 and tap 0 from row m; odd rows take tap 1 from row m.
    Returns (k00, k01, k10, k11) as conv2d kernels (kh, kw, in, out) for inputs padded by one
    row on top and one column on the left; 4 + 2 + 2 + 1 = 9 taps, the original weights.
    """
    k = tf.transpose(kernel, [0, 1, 3, 2])  # (3, 3, in, out)
    k00 = tf.stack([tf.stack([k[2, 2], k[2, 0]]), tf.stack([k[0, 2], k[0, 0]])])
    k01 = tf.stack([k[2, 1], k[0, 1]])[:, None]
    k10 = tf.stack([k[1, 2], k[1, 0]])[None]
    k11 = k[1, 1][None, None]
    return k00, k01, k10, k11


def _block_kernel(kernel):
    """Rewrites a stride-1 conv2d kernel as a stride-2 one that computes 2x2 output blocks.

    kernel: (kh, kw, in, out). Returns (kh + 1, kw + 1, in, 4 * out): output channel
    (oy, ox, c) of block (i, j) is output pixel (2i + oy, 2j + ox), channel c, of the original
    convolution, so depth_to_space(conv2d(x, block_kernel, 2, "VALID"), 2) equals
    conv2d(x, kernel, 1, "VALID") when the output sides are even. Each (oy, ox) slice is the
    original kernel shifted by (oy, ox) inside a zero border of one row and one column.
    """
    shifted = [tf.pad(kernel, [[oy, 1 - oy], [ox, 1 - ox], [0, 0], [0, 0]]) for oy in range(2) for ox in range(2)]
    return tf.concat(shifted, axis=3)


def pad_to_multiple(images, multiple: int = 4):
    """Reflect-pads H and W at the bottom/right to a multiple. Returns (padded, height, width)."""
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    padded = tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="REFLECT")
    # The converter loses the static channel count through a run-time pad; restore it.
    padded = tf.reshape(padded, [-1, height + pad_h, width + pad_w, 3])
    return padded, height, width


class ExportGenerator(tf.Module):
    """The ResNet generator of tfcyclegan.models, rebuilt from its trained weights for export.

    Holds its own float32 copies of the weights (so a SavedModel stores them once and loads
    without Keras or tfcyclegan). Supports norm "instance", "batch" (inference statistics)
    and "none", any number of residual blocks and filters.
    """

    def __init__(self, generator: keras.Model, model_config: ModelConfig, *, name: str | None = None):
        super().__init__(name=name or generator.name)
        self.model_config = model_config
        self._norm_epsilon = {}
        self.weights = {}
        for layer_name in self._conv_layer_names():
            layer = self._get_layer(generator, layer_name)
            entry = {"kernel": tf.Variable(layer.kernel.numpy(), name=f"{layer_name}/kernel", trainable=False)}
            if layer.use_bias:
                entry["bias"] = tf.Variable(layer.bias.numpy(), name=f"{layer_name}/bias", trainable=False)
            self.weights[layer_name] = entry
            norm_name = layer_name.replace("_conv", "_norm")
            if model_config.norm == "instance" and layer_name != "out_conv":
                self._norm_epsilon[norm_name] = float(self._get_layer(generator, norm_name).epsilon)
            elif model_config.norm == "batch" and layer_name != "out_conv":
                bn = self._get_layer(generator, norm_name)
                self._norm_epsilon[norm_name] = float(bn.epsilon)
                stats = {"gamma": bn.gamma, "beta": bn.beta, "moving_mean": bn.moving_mean,
                         "moving_variance": bn.moving_variance}
                self.weights[norm_name] = {
                    key: tf.Variable(value.numpy(), name=f"{norm_name}/{key}", trainable=False)
                    for key, value in stats.items()
                }

    def _conv_layer_names(self) -> list[str]:
        names = ["c7s1_conv", "down1_conv", "down2_conv"]
        for i in range(1, self.model_config.gen_blocks + 1):
            names += [f"res{i}_a_conv", f"res{i}_b_conv"]
        return names + ["up1_conv", "up2_conv", "out_conv"]

    @staticmethod
    def _get_layer(generator: keras.Model, layer_name: str):
        try:
            return generator.get_layer(layer_name)
        except ValueError as e:
            raise ExportError(
                f"Generator {generator.name!r} does not have the layout tfcyclegan.models.build_generator "
                f"makes (no layer {layer_name!r}); export_lib.ExportGenerator must follow models.py."
            ) from e

    @property
    def parameter_count(self) -> int:
        return sum(int(np.prod(v.shape)) for entry in self.weights.values() for v in entry.values())

    # -- layers --------------------------------------------------------------------------------

    def _conv(self, x, name, stride=1):
        entry = self.weights[name]
        y = tf.nn.conv2d(x, entry["kernel"], stride, "VALID")
        return tf.nn.bias_add(y, entry["bias"]) if "bias" in entry else y

    def _conv_blocks(self, x, name):
        """The same stride-1 VALID convolution as _conv, computed in 2x2 output blocks (TFLite-friendly).

        x: (batch, H, W, in) with H and W even; the kernel's sides must be odd (then the output
        sides H - kh + 1 and W - kw + 1 are even). For the last convolution (64 -> 3 channels,
        7x7) XNNPACK takes ~100 ms at 256 px in the plain form, whose 3 output channels fill 3
        of its 16 vector lanes, and ~40 ms in this one: a stride-2 8x8 convolution with 12
        output channels (31 % more multiply-adds, a quarter of them by zero taps), then
        depth_to_space (see benchmarks/export_latency.py --breakdown).
        """
        entry = self.weights[name]
        if int(entry["kernel"].shape[0]) % 2 == 0 or int(entry["kernel"].shape[1]) % 2 == 0:
            raise ExportError(f"{name}: the 2x2-block form needs an odd kernel, got {entry['kernel'].shape}.")
        y = tf.nn.conv2d(x, _block_kernel(entry["kernel"]), 2, "VALID")
        if "bias" in entry:
            y = tf.nn.bias_add(y, tf.tile(entry["bias"], [4]))
        return tf.nn.depth_to_space(y, 2)

    def _norm(self, x, name):
        norm = self.model_config.norm
        if norm == "instance":
            # The formulation of layers.InstanceNormalization; it lowers to XNNPACK-delegated ops.
            mean, variance = tf.nn.moments(x, axes=[1, 2], keepdims=True)
            return (x - mean) * tf.math.rsqrt(variance + self._norm_epsilon[name])
        if norm == "batch":
            bn = self.weights[name]
            scale = bn["gamma"] * tf.math.rsqrt(bn["moving_variance"] + self._norm_epsilon[name])
            return x * scale + (bn["beta"] - bn["moving_mean"] * scale)
        return x

    def _upsample(self, x, name, mobile):
        """Keras Conv2DTranspose(k=3, strides=2, padding="same"): doubles H and W."""
        entry = self.weights[name]
        kernel = entry["kernel"]
        if not mobile:
            shape = tf.shape(x)
            out_shape = tf.stack([shape[0], 2 * shape[1], 2 * shape[2], tf.shape(kernel)[2]])
            y = tf.nn.conv2d_transpose(x, kernel, out_shape, 2, "SAME")
        else:
            k00, k01, k10, k11 = _phase_kernels(kernel)
            xp = tf.pad(x, [[0, 0], [1, 0], [1, 0], [0, 0]])
            conv = lambda t, k: tf.nn.conv2d(t, k, 1, "VALID")
            phases = [conv(xp, k00), conv(xp[:, :, 1:], k01), conv(xp[:, 1:], k10), conv(x, k11)]
            y = tf.nn.depth_to_space(tf.concat(phases, axis=3), 2)
        return tf.nn.bias_add(y, entry["bias"]) if "bias" in entry else y

    def forward(self, images, *, mobile: bool = False):
        """images: float32 (batch, H, W, 3) in [-1, 1], H and W multiples of 4 (>= 8).

        Returns float32 (batch, H, W, 3) in [-1, 1], equal to the Keras generator.
        """
        reflect = reflect_pad_slices if mobile else (
            lambda t, p: tf.pad(t, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
        )
        relu = tf.nn.relu
        x = relu(self._norm(self._conv(reflect(images, 3), "c7s1_conv"), "c7s1_norm"))
        for name in ("down1", "down2"):
            x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
            x = relu(self._norm(self._conv(x, f"{name}_conv", 2), f"{name}_norm"))
        for i in range(1, self.model_config.gen_blocks + 1):
            y = relu(self._norm(self._conv(reflect(x, 1), f"res{i}_a_conv"), f"res{i}_a_norm"))
            y = self._norm(self._conv(reflect(y, 1), f"res{i}_b_conv"), f"res{i}_b_norm")
            x = x + y
        for name in ("up1", "up2"):
            x = relu(self._norm(self._upsample(x, f"{name}_conv", mobile), f"{name}_norm"))
        out_conv = self._conv_blocks if mobile else self._conv
        return tf.tanh(out_conv(reflect(x, 3), "out_conv"))

    def translate(self, images, *, mobile: bool = False):
        """images: float32 (batch, H, W, 3) in [-1, 1], any H, W >= MIN_SIDE. Same shape out."""
        padded, height, width = pad_to_multiple(images)
        return self.forward(padded, mobile=mobile)[:, :height, :width, :]

    # -- signatures ----------------------------------------------------------------------------

    def _checked_translate(self, images):
        # The signature's shape is documentation only (TF Serving and loaded signatures do not
        # enforce it), so the checks run in the graph, where they give a readable error.
        images = tf.ensure_shape(images, [None, None, None, 3], name="expected_images_batch_height_width_3_channels")
        shape = tf.shape(images)
        tf.debugging.assert_greater_equal(
            tf.minimum(shape[1], shape[2]), MIN_SIDE,
            message=f"images must be at least {MIN_SIDE}x{MIN_SIDE} pixels (height, width)",
        )
        return self.translate(images)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serving_default(self, images):
        """uint8 (batch, H, W, 3) RGB in [0, 255] -> {"images": uint8 (batch, H, W, 3)}."""
        return {"images": to_uint8(self._checked_translate(to_float(images)))}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    def translate_float(self, images):
        """float32 (batch, H, W, 3) in [-1, 1] -> {"images": float32 (batch, H, W, 3) in [-1, 1]}."""
        return {"images": self._checked_translate(images)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def translate_encoded(self, image_bytes):
        """JPEG/PNG/BMP/GIF bytes (batch,) -> {"png_bytes": PNG bytes (batch,)}; sizes may differ.

        Grey and RGBA images are converted to RGB. The `_bytes` suffixes make TF Serving's REST
        API carry both as {"b64": ...}.
        """

        def one(data):
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
            out = to_uint8(self._checked_translate(to_float(image)[None]))[0]
            return tf.io.encode_png(out)

        return {"png_bytes": tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([], tf.string))}

    def mobile_function(self):
        """The TFLite graph: float32 (batch, H, W, 3) in [-1, 1] -> {"images": same shape}.

        A separate tf.function (not an attribute) so SavedModels do not carry this graph too.
        """
        spec = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")
        return tf.function(lambda images: {"images": self.translate(images, mobile=True)}, input_signature=[spec])

    def signatures(self) -> dict:
        return {
            "serving_default": self.serving_default.get_concrete_function(),
            "translate_float": self.translate_float.get_concrete_function(),
            "translate_encoded": self.translate_encoded.get_concrete_function(),
        }


def to_float(images_uint8):
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return tf.cast(images_uint8, tf.float32) / 127.5 - 1.0


def to_uint8(images):
    """float32 [-1, 1] -> uint8 [0, 255], rounded."""
    return tf.cast(tf.round(tf.clip_by_value((images + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)


def keras_reference(generator: keras.Model, images: np.ndarray) -> np.ndarray:
    """What the exported graphs must compute: the Keras generator on the reflect-padded images,
    cropped back. images: float32 (batch, H, W, 3) in [-1, 1]."""
    padded, height, width = pad_to_multiple(tf.constant(images, tf.float32))
    return generator(padded, training=False).numpy()[:, : int(height), : int(width)]


# -- test images -----------------------------------------------------------------------------


def synthetic_images(count: int, height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """Deterministic photo-like images: smooth colour fields, hard edges and a little noise.

    Returns float32 (count, height, width, 3) in [-1, 1].
    """
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1.0, 1.0, (count, 5, 5, 3)).astype(np.float32)
    images = tf.image.resize(coarse, (height, width), method="bicubic").numpy()
    for image in images:
        for _ in range(3):
            y0, x0 = rng.integers(0, height // 2), rng.integers(0, width // 2)
            y1, x1 = y0 + rng.integers(2, height // 2 + 2), x0 + rng.integers(2, width // 2 + 2)
            image[y0:y1, x0:x1] = rng.uniform(-1.0, 1.0, 3)
    images += rng.normal(0.0, 0.03, images.shape).astype(np.float32)
    return np.clip(images, -1.0, 1.0)


def load_parity_images(paths: Sequence[str], height: int, width: int) -> np.ndarray:
    """Real photos for the parity checks, resized to (height, width). float32 in [-1, 1]."""
    out = []
    for path in paths:
        data = tf.io.read_file(path)
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        out.append(tf.image.resize(to_float(image), (height, width), antialias=True).numpy())
    if not out:
        raise ExportError("No parity images were given.")
    return np.clip(np.stack(out), -1.0, 1.0)


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two images on the [-1, 1] scale (peak-to-peak 2), in dB; inf when equal."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0.0 else 10.0 * float(np.log10(4.0 / mse))


# -- SavedModel -------------------------------------------------------------------------------


def save_saved_model(module: ExportGenerator, path: str) -> None:
    tf.saved_model.save(module, path, signatures=module.signatures())


def saved_model_translate(path_or_loaded):
    """A callable float32 (batch, H, W, 3) [-1, 1] -> same, through the translate_float signature."""
    loaded = tf.saved_model.load(path_or_loaded) if isinstance(path_or_loaded, str) else path_or_loaded
    signature = loaded.signatures["translate_float"]
    return lambda images: signature(images=tf.constant(images, tf.float32))["images"].numpy()


def directory_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


# -- TFLite -----------------------------------------------------------------------------------


def convert_tflite(
    module: ExportGenerator,
    quantization: str,
    *,
    representative_images: np.ndarray | None = None,
    float32_content: bytes | None = None,
) -> bytes:
    """Converts the mobile graph with TensorFlow's TFLite converter, builtin ops only.

    quantization: "float32"; "float16" (weights stored as float16, computed in float32 on CPUs
    without fp16 arithmetic); "int8" (dynamic range: int8 per-channel weights, activations
    quantized on the fly, XNNPACK's fast path; the first convolution keeps float32 weights, see
    keep_first_conv_float); "int8_full" (full integer with `representative_images`; it converts
    with builtins, but int8 instance-norm statistics cost too much accuracy, see the README; not
    offered by export.py).
    float32_content: the float32 conversion of the same module, if already made (int8 uses its
    first convolution's weights); converted here when None.
    """
    if quantization == "int8":
        if float32_content is None:
            float32_content = convert_tflite(module, "float32")
        return keep_first_conv_float(_convert(module, "int8", None), float32_content)
    return _convert(module, quantization, representative_images)


def _convert(module: ExportGenerator, quantization: str, representative_images: np.ndarray | None) -> bytes:
    concrete = module.mobile_function().get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
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


def _conv_weight_tensors(model) -> list:
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
    costs more than any other layer (measured on the full generator, 256 px, PSNR against the
    SavedModel: random weights 29.2 -> 30.8 dB, a briefly trained model 35.6 -> 36.8 dB; every
    other single layer gives 0.0-0.6 dB). Its 9,408 weights add 28 KB to the file and no
    measurable latency (the last convolution would add ~0.1 s at 256 px for ~0.2 dB, so it
    stays int8). The converter has no per-layer switch for dynamic-range quantization, so the
    weights are taken from the float32 conversion of the same graph and checked against the
    int8 ones (same shape, within half a quantization step per output channel).
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(int8_content))
    reference = flatbuffer_utils.read_model_from_bytearray(bytearray(float32_content))
    quantized, floats = _conv_weight_tensors(model), _conv_weight_tensors(reference)
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


def measure_parity(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray], quantization: str) -> dict:
    """Compares per-size output batches; passes when the quantization's bound holds at every size."""
    rule = PARITY[quantization]
    max_abs = max(float(np.max(np.abs(r - c))) for r, c in zip(reference, candidate))
    psnr = min(psnr_db(r, c) for r, c in zip(reference, candidate))
    value = max_abs if rule.metric == "max_abs" else psnr
    passed = value <= rule.bound if rule.metric == "max_abs" else value >= rule.bound
    return {
        "metric": rule.metric, "bound": rule.bound, "passed": bool(passed),
        "max_abs": max_abs, "psnr_db": None if psnr == float("inf") else round(psnr, 2),
    }


# -- names, domains, versions ----------------------------------------------------------------

_UTKFACE_DOMAINS = {
    "age": ("age 20-29", "age 50-59"),
    "ethnicity": ("White", "Black"),
    "gender": ("male", "female"),
}


def default_name(config: TrainConfig) -> str:
    """The task for UTKFace-style runs, else the dataset's name (folder name, TFDS name)."""
    data = config.data
    if data.dataset == "folder" and data.data_dir:
        name = os.path.basename(os.path.normpath(data.data_dir))
    elif data.dataset == "tfds" and data.tfds_name:
        name = data.tfds_name.split("/")[-1].split(":")[0]
    else:
        name = data.task
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "model"


def describe_domains(config: TrainConfig) -> dict:
    data = config.data
    if data.domain_a is not None:
        return {"a": data.domain_a, "b": data.domain_b}
    if data.dataset in ("utkface", "synthetic"):
        a, b = _UTKFACE_DOMAINS[data.task]
        return {"a": a, "b": b}
    if data.dataset == "tfds" and data.tfds_name and "2" in data.tfds_name.split("/")[-1]:
        a, _, b = data.tfds_name.split("/")[-1].split(":")[0].partition("2")
        return {"a": a, "b": b}
    return {"a": "trainA", "b": "trainB"}


def _existing_versions(path: str) -> list[int]:
    if not os.path.isdir(path):
        return []
    return sorted(int(d) for d in os.listdir(path) if d.isdigit() and os.path.isdir(os.path.join(path, d)))


def next_version(export_dir: str, name: str) -> int:
    versions = [v for d in DIRECTIONS for v in _existing_versions(os.path.join(export_dir, f"{name}_{d}"))]
    return max(versions, default=0) + 1


def read_manifest(export_dir: str) -> dict:
    path = os.path.join(export_dir, MANIFEST_FILE)
    if not os.path.isfile(path):
        return {"format_version": 1, "models": {}}
    with open(path) as f:
        return json.load(f)


def _write_json(path: str, value) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)


# -- the export ------------------------------------------------------------------------------


def restore(workdir: str) -> checkpoint_lib.RestoredGenerators:
    """checkpoint.restore_generators, with every unreadable checkpoint reported as CheckpointError.

    A truncated data file makes TensorFlow's reader raise IndexError ("Read less bytes than
    requested"), which restore_generators does not translate yet.
    """
    try:
        return checkpoint_lib.restore_generators(workdir)
    except (IndexError, OSError) as e:
        raise checkpoint_lib.CheckpointError(
            f"The checkpoint in {checkpoint_lib.checkpoint_dir(workdir)!r} cannot be read (corrupt or truncated): {e}"
        ) from e



def check_sizes(size: int) -> list[tuple[int, int]]:
    """The export size and a second, non-square size with odd sides (so not divisible by 4)."""
    height = max(MIN_SIDE + 1, size * 3 // 4) | 1
    width = size + 1 if size % 2 == 0 else size + 2
    return [(size, size), (height, width)]


def _parse_list(value: str | Sequence[str], valid: tuple[str, ...], flag: str) -> list[str]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    items = [v for v in items if v]
    bad = [v for v in items if v not in valid]
    if bad or not items:
        raise ExportError(f"--{flag} takes a comma-separated list of {', '.join(valid)}. Received: {value!r}")
    return list(dict.fromkeys(items))


def export(
    workdir: str,
    export_dir: str,
    *,
    formats: str | Sequence[str] = FORMATS,
    quantizations: str | Sequence[str] = QUANTIZATIONS,
    version: int | None = None,
    name: str | None = None,
    size: int | None = None,
    parity_images: Sequence[str] | None = None,
    num_threads: int | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Exports both generators of the run in `workdir`; returns this export's manifest entries.

    size: the export size (default: the last stage of the run's schedule).
    parity_images: photos for the parity checks (default: synthetic_images).
    Raises CheckpointError (no/corrupt checkpoint) or ExportError (bad arguments, failed
    verification); nothing that failed verification is left in export_dir.
    """
    formats = _parse_list(formats, FORMATS, "formats")
    quantizations = _parse_list(quantizations, QUANTIZATIONS, "tflite_quantization") if "tflite" in formats else []
    restored = restore(workdir)
    config = restored.config
    name = name or default_name(config)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ExportError(f"--name may only use letters, digits, '_', '.', '-'. Received: {name!r}")
    size = size or config.schedule.stages[-1].size
    if size < MIN_SIDE:
        raise ExportError(f"--size must be at least {MIN_SIDE}. Received: {size}")
    if version is None:
        version = next_version(export_dir, name)
    if not isinstance(version, int) or version < 1:
        raise ExportError(f"--version must be an integer >= 1. Received: {version!r}")
    for direction in DIRECTIONS:
        target = os.path.join(export_dir, f"{name}_{direction}", str(version))
        if "saved_model" in formats and os.path.exists(target):
            raise ExportError(
                f"{target} already exists; TF Serving versions are immutable: pass another --version "
                f"(next free: {next_version(export_dir, name)}) or delete it."
            )
    os.makedirs(export_dir, exist_ok=True)

    sizes = check_sizes(size)
    inputs = [
        load_parity_images(parity_images, h, w) if parity_images else synthetic_images(2, h, w, seed=h * 1000 + w)
        for h, w in sizes
    ]
    domains = describe_domains(config)
    entries = {}
    for direction, generator in (("a2b", restored.gen_g), ("b2a", restored.gen_f)):
        model_name = f"{name}_{direction}"
        source, target_domain = (domains["a"], domains["b"]) if direction == "a2b" else (domains["b"], domains["a"])
        entry = {
            "name": model_name, "task": config.data.task, "dataset": config.data.dataset,
            "direction": direction, "generator": "gen_g" if direction == "a2b" else "gen_f",
            "from_domain": source, "to_domain": target_domain, "domains": domains,
            "global_step": restored.global_step, "checkpoint": os.path.abspath(restored.checkpoint_path),
            "workdir": os.path.abspath(workdir), "config": config.to_dict(),
            "export_size": size, "check_sizes": [list(s) for s in sizes], "version": version,
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "parity_inputs": "files" if parity_images else "synthetic",
        }
        module = ExportGenerator(generator, config.model, name=model_name)
        expected = [keras_reference(generator, x) for x in inputs]
        entry["parameters"] = module.parameter_count
        with tempfile.TemporaryDirectory(dir=export_dir, prefix=f".tmp-{model_name}-") as tmp:
            tmp_saved = os.path.join(tmp, "saved_model")
            save_saved_model(module, tmp_saved)
            loaded = tf.saved_model.load(tmp_saved)
            run_saved = saved_model_translate(loaded)
            served = [run_saved(x) for x in inputs]
            keras_max_abs = max(float(np.max(np.abs(s - e))) for s, e in zip(served, expected))
            if not keras_max_abs <= KERAS_TOLERANCE:
                raise ExportError(
                    f"{model_name}: the reloaded SavedModel differs from the Keras generator by {keras_max_abs:.3g} "
                    f"(max abs, tolerance {KERAS_TOLERANCE}) at sizes {sizes}."
                )
            _check_other_signatures(loaded, inputs[1], model_name)
            log(f"{model_name}: SavedModel matches Keras (max abs {keras_max_abs:.2g} at sizes {sizes})")
            entry["saved_model"] = {
                "keras_max_abs": keras_max_abs,
                "signatures": {
                    "serving_default": {"inputs": {"images": "uint8 [batch, H, W, 3]"}, "outputs": {"images": "uint8 [batch, H, W, 3]"}},
                    "translate_float": {"inputs": {"images": "float32 [batch, H, W, 3] in [-1, 1]"}, "outputs": {"images": "float32 [batch, H, W, 3] in [-1, 1]"}},
                    "translate_encoded": {"inputs": {"image_bytes": "string [batch] JPEG/PNG"}, "outputs": {"png_bytes": "string [batch] PNG"}},
                },
            }

            tflite_entries, contents = {}, {}
            for quantization in quantizations:
                content = contents[quantization] = convert_tflite(
                    module, quantization, float32_content=contents.get("float32")
                )
                filename = f"{model_name}.{quantization}.tflite"
                ops = check_builtin_only(content, filename)
                runner = TFLiteRunner(model_content=content, num_threads=num_threads)
                outputs = [runner(x) for x in inputs]  # export size first, then a resize
                parity = measure_parity(served, outputs, quantization)
                figure = f"max abs {parity['max_abs']:.3g}" if parity["metric"] == "max_abs" else f"PSNR {parity['psnr_db']} dB"
                if not parity["passed"]:
                    raise ExportError(
                        f"{filename} failed its parity check against the SavedModel: {figure} at sizes {sizes}, "
                        f"bound {'<=' if parity['metric'] == 'max_abs' else '>='} {parity['bound']}. "
                        "Nothing was written for this model; export without this quantization "
                        "(--tflite_quantization) or check the weights."
                        + (" This model loses too much in 8 bits: ship the float16 file (same accuracy as "
                           "float32, half its size). Weights that are barely trained quantize worse than "
                           "trained ones; --parity_images checks on your own photos."
                           if quantization == "int8" else "")
                    )
                log(f"{filename}: {len(content) / 1e6:.2f} MB, builtin ops only, {figure} vs SavedModel")
                with open(os.path.join(tmp, filename), "wb") as f:
                    f.write(content)
                tflite_entries[quantization] = {
                    "path": filename, "bytes": len(content), "operators": ops, "parity": parity,
                    "weights": TFLITE_WEIGHTS[quantization],
                    "input": {"name": runner.input_name, "dtype": "float32", "shape": [-1, -1, -1, 3], "range": [-1, 1]},
                    "output": {"name": runner.output_name, "dtype": "float32", "shape": [-1, -1, -1, 3], "range": [-1, 1]},
                }
            if tflite_entries:
                entry["tflite"] = tflite_entries

            # Verified: move everything into place (the SavedModel last, atomically by rename).
            for quantization, item in tflite_entries.items():
                os.replace(os.path.join(tmp, item["path"]), os.path.join(export_dir, item["path"]))
            if "saved_model" in formats:
                relative = os.path.join(model_name, str(version))
                entry["saved_model"].update({"path": relative, "variables_bytes": directory_bytes(os.path.join(tmp_saved, "variables"))})
                _write_json(os.path.join(tmp_saved, METADATA_FILE), entry)
                os.makedirs(os.path.join(export_dir, model_name), exist_ok=True)
                os.rename(tmp_saved, os.path.join(export_dir, relative))
            else:
                entry.pop("saved_model")
                entry["reference"] = {"keras_max_abs": keras_max_abs}
        entries[model_name] = entry

    manifest = read_manifest(export_dir)
    manifest.setdefault("models", {}).update(entries)
    manifest["format_version"] = 1
    _write_json(os.path.join(export_dir, MANIFEST_FILE), manifest)
    return entries


def _check_other_signatures(loaded, images: np.ndarray, model_name: str) -> None:
    """serving_default and translate_encoded agree with translate_float (to one uint8 level)."""
    as_uint8 = to_uint8(images).numpy()
    served = loaded.signatures["serving_default"](images=tf.constant(as_uint8))["images"].numpy()
    float_out = loaded.signatures["translate_float"](images=to_float(as_uint8))["images"]
    expected = to_uint8(float_out).numpy().astype(np.int32)
    if served.dtype != np.uint8 or served.shape != as_uint8.shape or np.abs(served.astype(np.int32) - expected).max() > 1:
        raise ExportError(f"{model_name}: serving_default disagrees with translate_float.")
    png = tf.io.encode_png(as_uint8[0])
    decoded = tf.io.decode_png(loaded.signatures["translate_encoded"](image_bytes=tf.stack([png]))["png_bytes"][0]).numpy()
    if not np.array_equal(decoded, served[0]):
        raise ExportError(f"{model_name}: translate_encoded disagrees with serving_default.")
