"""Per-image CPU latency and file size of the exported generator, against Keras. Prints JSON.

    python -m benchmarks.export_latency                     # full-size generator, random weights
    python -m benchmarks.export_latency --workdir=runs/age  # a trained run (gen_g)
    python -m benchmarks.export_latency --sizes=128 --repeats=3 --no_baseline --no_full_int8
    python -m benchmarks.export_latency --clock=cpu --breakdown     # one thread, CPU seconds, per piece
    python -m benchmarks.export_latency --clock=wall --threads=2    # same thread count for TF and LiteRT

Measures, at each size (batch 1): the Keras model (eager call and inside a tf.function), the
SavedModel's translate_float signature, and each TFLite file (float32, float16, int8) run by
LiteRT with XNNPACK. "int8_all_layers" is dynamic range on every convolution (export.py keeps
the first one in float32). "baseline_*" are the TFLite files a plain conversion of the Keras model
gives (MIRROR_PAD, run-time-shaped TRANSPOSE_CONV), to show what the export graph fixes;
"int8_full" is full-integer quantization with a representative set (converted with builtins,
not exported: see "parity"). --breakdown times the generator's pieces at the largest size, to
show where the time goes. Other processes may share the CPU, so every figure is the minimum
of --repeats interleaved runs. Parity is against the SavedModel at the largest size, on UTKFace
sample photos when ../shared/data/utkface_sample exists, else on synthetic images.

Aims (issue 4): float16 file <= 23 MB, int8 file <= 12 MB, TFLite latency <= SavedModel's.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from tfcyclegan import export as export_lib
from tfcyclegan.config import ModelConfig
from tfcyclegan.export import saved_model
from tfcyclegan.export import tflite as tflite_lib
from tfcyclegan.model.layers import InstanceNormalization, NormedConv2D, OutputConv2D, ReflectionPad2D, UpConv2D
from tfcyclegan.model.networks import build_generator
from tfcyclegan.model.workdir import restore_generators
from tfcyclegan.runtime import private


def sample_photos(count: int) -> list[str]:
    env = os.environ.get("TFCYCLEGAN_UTKFACE_SAMPLE")
    folder = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface_sample"
    return sorted(glob.glob(str(folder / "*.jpg")))[:: 97][:count]


def plain_conversion(generator: keras.Model, quantization: str) -> bytes:
    """What converting the Keras generator directly gives (MIRROR_PAD, run-time-shaped TRANSPOSE_CONV)."""
    fn = tf.function(lambda x: generator(x, training=False), input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    return tflite_lib.convert_concrete(fn.get_concrete_function(), generator, quantization)


def _pieces(generator: keras.Model, cfg: ModelConfig, size: int) -> dict:
    """The generator's pieces as small models of the same layers: name -> (input shape, calls per
    image, mobile -> keras.Model with the trained weights of the layers it names)."""
    f = cfg.gen_filters

    def piece(shape, build, weights_from):
        def make(mobile: bool) -> keras.Model:
            inputs = keras.Input(shape[1:], batch_size=1)
            model = keras.Model(inputs, build(inputs, mobile))
            weighted = [layer for layer in model.layers if layer.weights]
            for layer, name in zip(weighted, weights_from):
                layer.set_weights(generator.get_layer(name).get_weights())
            return model
        return make

    def res_conv(x, mobile):
        return NormedConv2D(4 * f, 3)(ReflectionPad2D(1, mobile=mobile)(x))

    def norm_relu(x, mobile):
        return keras.layers.ReLU()(InstanceNormalization()(x))

    def first_conv(x, mobile):
        return NormedConv2D(f, 7)(ReflectionPad2D(3, mobile=mobile)(x))

    def last_conv(x, mobile):
        return keras.layers.Activation("tanh")(OutputConv2D(3, 7, mobile=mobile)(ReflectionPad2D(3, mobile=mobile)(x)))

    return {
        "res_conv_3x3": ((1, size // 4, size // 4, 4 * f), 2 * cfg.gen_blocks, piece((1, size // 4, size // 4, 4 * f), res_conv, ["res1_a_conv"])),
        "instance_norm_relu": ((1, size // 4, size // 4, 4 * f), 2 * cfg.gen_blocks + 1, piece((1, size // 4, size // 4, 4 * f), norm_relu, [])),
        "upsample_1": ((1, size // 4, size // 4, 4 * f), 1, piece((1, size // 4, size // 4, 4 * f),
                       lambda x, mobile: UpConv2D(2 * f, add_bias=False, mobile=mobile)(x), ["up1_conv"])),
        "upsample_2": ((1, size // 2, size // 2, 2 * f), 1, piece((1, size // 2, size // 2, 2 * f),
                       lambda x, mobile: UpConv2D(f, add_bias=False, mobile=mobile)(x), ["up2_conv"])),
        "first_conv_7x7": ((1, size, size, 3), 1, piece((1, size, size, 3), first_conv, ["c7s1_conv"])),
        "last_conv_7x7_tanh": ((1, size, size, f), 1, piece((1, size, size, f), last_conv, ["out_conv"])),
    }


def layer_breakdown(generator: keras.Model, cfg: ModelConfig, size: int, threads: int, clock, repeats: int) -> dict:
    """Milliseconds per call of the generator's pieces at `size`: TensorFlow (the SavedModel's
    form) against TFLite float32 and int8 (the mobile form), batch 1. Needs norm="instance"."""
    out = {}
    for name, (shape, calls, make) in _pieces(generator, cfg, size).items():
        spec = [tf.TensorSpec(shape, tf.float32)]
        serving, mobile = make(False), make(True)
        run_tf = tf.function(lambda x, m=serving: m(x, training=False), input_signature=spec)
        runs = {"tensorflow": lambda x, fn=run_tf: fn(x).numpy()}
        concrete = tf.function(lambda x, m=mobile: m(x, training=False), input_signature=spec).get_concrete_function()
        for quantization in ("float32", "int8"):
            content = tflite_lib.convert_concrete(concrete, mobile, quantization)
            runs[f"tflite_{quantization}"] = export_lib.TFLiteRunner(model_content=content, num_threads=threads)
        x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
        best = {}
        for fn in runs.values():
            fn(x)
        for _ in range(repeats):
            for key, fn in runs.items():
                start = clock()
                fn(x)
                best[key] = min(best.get(key, float("inf")), clock() - start)
        out[name] = {"calls_per_image": calls, **{f"{k}_ms": round(v * 1000, 2) for k, v in best.items()}}
    return out


def xnnpack_partitions(runner: export_lib.TFLiteRunner) -> int:
    """XNNPACK partitions fed by activations (1 = the whole graph runs in one delegate)."""
    nodes = private.tflite_ops_details(runner.interpreter)
    activations = {int(runner.interpreter.get_input_details()[0]["index"])}
    activations |= {int(o) for op in nodes if op["op_name"] != "DELEGATE" for o in op["outputs"]}
    return sum(1 for op in nodes if op["op_name"] == "DELEGATE" and activations & {int(i) for i in op["inputs"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", help="a trained run (default: a generator with random weights)")
    parser.add_argument("--model", choices=["full", "tiny"], default="full", help="without --workdir: full size or tiny")
    parser.add_argument("--sizes", default="128,256")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall: elapsed seconds; cpu: process CPU seconds with one thread everywhere, "
                             "which other processes on the machine barely disturb")
    parser.add_argument("--no_baseline", action="store_true", help="skip the plain-conversion TFLite files")
    parser.add_argument("--no_full_int8", action="store_true", help="skip full-integer quantization")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the generator's pieces (residual conv, norm, upsampling, first/last conv) "
                             "at the largest size: TensorFlow vs TFLite float32 and int8")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.clock == "cpu":
        args.threads = 1
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    try:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads if args.clock == "cpu" else 0)
    except RuntimeError as e:
        print(f"warning: TensorFlow threads not set ({e})", file=sys.stderr)

    if args.workdir:
        restored = restore_generators(args.workdir)
        generator, model_config, source = restored.gen_g, restored.config.model, os.path.abspath(args.workdir)
    else:
        keras.utils.set_random_seed(0)
        model_config = ModelConfig() if args.model == "full" else ModelConfig(gen_filters=8, gen_blocks=1)
        generator, source = build_generator(model_config, name="gen_g"), "random init (N(0, 0.02) convolutions)"
    module = export_lib.ServingModule(generator)
    mobile = export_lib.mobile_generator(generator, model_config)
    largest = max(sizes)
    photos = sample_photos(6)
    parity_inputs = (
        export_lib.load_parity_images(photos, largest, largest) if photos
        else export_lib.synthetic_images(6, largest, largest)
    )

    out: dict = {
        "model": {"source": source, "parameters": generator.count_params(), "gen_blocks": model_config.gen_blocks,
                  "gen_filters": model_config.gen_filters, "norm": model_config.norm},
        "machine": {"cpu_count": os.cpu_count(), "threads": args.threads, "clock": args.clock,
                    "tensorflow": tf.__version__, "python": platform.python_version(), "repeats": args.repeats,
                    "load_average_at_start": [round(v, 2) for v in os.getloadavg()]},
        "parity_inputs": "utkface_sample" if photos else "synthetic",
    }
    with tempfile.TemporaryDirectory() as tmp:
        saved = os.path.join(tmp, "saved_model")
        saved_model.save(module, saved)
        run_saved = saved_model.float_translator(saved)
        files = {
            "saved_model_total_mb": saved_model.directory_bytes(saved) / 1e6,
            "saved_model_variables_mb": saved_model.directory_bytes(os.path.join(saved, "variables")) / 1e6,
            "float32_parameters_mb": generator.count_params() * 4 / 1e6,
        }
        tflite = {}
        for q in export_lib.QUANTIZATIONS:
            tflite[q] = export_lib.convert_tflite(mobile, q, float32_content=tflite.get("float32"))
        # Dynamic range on every layer, the first convolution included (what export.py made before).
        tflite["int8_all_layers"] = tflite_lib.convert_plain(mobile, "int8")
        if not args.no_full_int8:
            representative = export_lib.synthetic_images(8, 128, 128, seed=7)
            if photos:
                representative = export_lib.load_parity_images(sample_photos(8), 128, 128)
            tflite["int8_full"] = export_lib.convert_tflite(mobile, "int8_full", representative_images=representative)
        if not args.no_baseline:
            for q in ("float32", "float16", "int8"):
                tflite[f"baseline_{q}"] = plain_conversion(generator, q)
        files.update({f"tflite_{name}_mb": len(content) / 1e6 for name, content in tflite.items()})
        out["files"] = {k: round(v, 2) for k, v in files.items()}
        runners = {name: export_lib.TFLiteRunner(model_content=c, num_threads=args.threads) for name, c in tflite.items()}
        out["tflite_operators"] = {name: export_lib.tflite_operators(c) for name, c in tflite.items()}

        reference = np.concatenate([run_saved(x[None]) for x in parity_inputs])
        parity = {}
        for name, runner in runners.items():
            got = np.concatenate([runner(x[None]) for x in parity_inputs])
            parity[name] = {"max_abs": round(float(np.abs(got - reference).max()), 5),
                            "psnr_db": round(export_lib.psnr_db(got, reference), 2)}
        keras_out = np.concatenate([export_lib.keras_reference(generator, x[None]) for x in parity_inputs])
        parity["saved_model_vs_keras"] = {"max_abs": float(np.abs(keras_out - reference).max())}
        out["parity_vs_saved_model"] = parity

        keras_fn = tf.function(lambda x: generator(x, training=False), input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
        candidates = {
            "keras_eager": lambda x: generator(x, training=False).numpy(),
            "keras_tf_function": lambda x: keras_fn(x).numpy(),
            "saved_model": run_saved,
            **{f"tflite_{name}": runner for name, runner in runners.items()},
        }
        latency: dict = {}
        for size in sizes:
            x = export_lib.synthetic_images(1, size, size, seed=size)
            best = {}
            for fn in candidates.values():
                fn(x)  # warm-up: tracing, allocation, XNNPACK weight packing
            out["xnnpack_partitions"] = {name: xnnpack_partitions(runner) for name, runner in runners.items()}
            for repeat in range(args.repeats):
                for name, fn in candidates.items():
                    if name.startswith("tflite_baseline_int8") and repeat >= 2:
                        continue  # seconds per run; two are enough to show it
                    start = clock()
                    fn(x)
                    best[name] = min(best.get(name, float("inf")), clock() - start)
            latency[str(size)] = {k: round(v, 4) for k, v in best.items()}
            print(f"{size}px: " + ", ".join(f"{k}={v:.3f}s" for k, v in best.items()), file=sys.stderr)
        out["latency_s"] = latency
        if args.breakdown:
            out["breakdown_ms"] = {"size": largest, **layer_breakdown(generator, model_config, largest, args.threads, clock,
                                                                      args.repeats)}

    at = latency[str(largest)]
    out["aims"] = {
        "float16_file_at_most_23_mb": out["files"]["tflite_float16_mb"] <= 23,
        "int8_file_at_most_12_mb": out["files"]["tflite_int8_mb"] <= 12,
        **{f"tflite_{q}_not_slower_than_saved_model_at_{largest}px": at[f"tflite_{q}"] <= at["saved_model"]
           for q in export_lib.QUANTIZATIONS},
        "int8_psnr_at_least_30_db": parity["int8"]["psnr_db"] >= 30,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
