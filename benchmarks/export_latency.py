"""Per-image CPU latency and file size of the exported generator, against Keras. Prints JSON.

    python benchmarks/export_latency.py                     # full-size generator, random weights
    python benchmarks/export_latency.py --workdir=runs/age  # a trained run (gen_g)
    python benchmarks/export_latency.py --sizes=128 --repeats=3 --no_baseline --no_full_int8
    python benchmarks/export_latency.py --clock=cpu --breakdown     # one thread, CPU seconds, per piece
    python benchmarks/export_latency.py --clock=wall --threads=2    # same thread count for TF and LiteRT

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfcyclegan import export_lib  # noqa: E402
from tfcyclegan.config import ModelConfig  # noqa: E402
from tfcyclegan.layers import reflect_pad_slices  # noqa: E402
from tfcyclegan.models import build_generator  # noqa: E402


def sample_photos(count: int) -> list[str]:
    env = os.environ.get("TFCYCLEGAN_UTKFACE_SAMPLE")
    folder = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface_sample"
    return sorted(glob.glob(str(folder / "*.jpg")))[:: 97][:count]


def plain_conversion(generator: keras.Model, quantization: str) -> bytes:
    """What converting the Keras generator directly gives (the issue's measured baseline)."""
    fn = tf.function(lambda x: generator(x, training=False), input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def layer_breakdown(module: export_lib.ExportGenerator, size: int, threads: int, clock, repeats: int) -> dict:
    """Milliseconds per call of the generator's pieces at `size`: TensorFlow (the SavedModel's
    formulation) against TFLite float32 and int8 (the mobile formulation), batch 1."""
    cfg = module.model_config
    reflect = {
        False: lambda t, p: tf.pad(t, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT"),
        True: reflect_pad_slices,
    }
    f = cfg.gen_filters
    pieces = {  # name: (input shape, calls per image, mobile -> function)
        "res_conv_3x3": ((1, size // 4, size // 4, 4 * f), 2 * cfg.gen_blocks,
                         lambda mobile: lambda x: module._conv(reflect[mobile](x, 1), "res1_a_conv")),
        "instance_norm_relu": ((1, size // 4, size // 4, 4 * f), 2 * cfg.gen_blocks + 1,
                               lambda mobile: lambda x: tf.nn.relu(module._norm(x, "res1_a_norm"))),
        "upsample_1": ((1, size // 4, size // 4, 4 * f), 1, lambda mobile: lambda x: module._upsample(x, "up1_conv", mobile)),
        "upsample_2": ((1, size // 2, size // 2, 2 * f), 1, lambda mobile: lambda x: module._upsample(x, "up2_conv", mobile)),
        "first_conv_7x7": ((1, size, size, 3), 1, lambda mobile: lambda x: module._conv(reflect[mobile](x, 3), "c7s1_conv")),
        "last_conv_7x7_tanh": ((1, size, size, f), 1,
                               lambda mobile: lambda x: tf.tanh((module._conv_blocks if mobile else module._conv)(
                                   reflect[mobile](x, 3), "out_conv"))),
    }
    out = {}
    for name, (shape, calls, build) in pieces.items():
        spec = [tf.TensorSpec(shape, tf.float32)]
        run_tf = tf.function(build(False), input_signature=spec)
        runs = {"tensorflow": lambda x, fn=run_tf: fn(x).numpy()}
        for quantization in ("float32", "int8"):
            converter = tf.lite.TFLiteConverter.from_concrete_functions(
                [tf.function(build(True), input_signature=spec).get_concrete_function()], module)
            if quantization == "int8":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            runs[f"tflite_{quantization}"] = export_lib.TFLiteRunner(model_content=converter.convert(), num_threads=threads)
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
    nodes = runner.interpreter._get_ops_details()  # the only way to see the delegated plan
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
        restored = export_lib.restore(args.workdir)
        generator, model_config, source = restored.gen_g, restored.config.model, os.path.abspath(args.workdir)
    else:
        keras.utils.set_random_seed(0)
        model_config = ModelConfig() if args.model == "full" else ModelConfig(gen_filters=8, gen_blocks=1)
        generator, source = build_generator(model_config, name="gen_g"), "random init (N(0, 0.02) convolutions)"
    module = export_lib.ExportGenerator(generator, model_config)
    largest = max(sizes)
    photos = sample_photos(6)
    parity_inputs = (
        export_lib.load_parity_images(photos, largest, largest) if photos
        else export_lib.synthetic_images(6, largest, largest)
    )

    out: dict = {
        "model": {"source": source, "parameters": module.parameter_count, "gen_blocks": model_config.gen_blocks,
                  "gen_filters": model_config.gen_filters, "norm": model_config.norm},
        "machine": {"cpu_count": os.cpu_count(), "threads": args.threads, "clock": args.clock,
                    "tensorflow": tf.__version__, "python": platform.python_version(), "repeats": args.repeats,
                    "load_average_at_start": [round(v, 2) for v in os.getloadavg()]},
        "parity_inputs": "utkface_sample" if photos else "synthetic",
    }
    with tempfile.TemporaryDirectory() as tmp:
        saved = os.path.join(tmp, "saved_model")
        export_lib.save_saved_model(module, saved)
        run_saved = export_lib.saved_model_translate(saved)
        files = {
            "saved_model_total_mb": export_lib.directory_bytes(saved) / 1e6,
            "saved_model_variables_mb": export_lib.directory_bytes(os.path.join(saved, "variables")) / 1e6,
            "float32_parameters_mb": module.parameter_count * 4 / 1e6,
        }
        tflite = {}
        for q in export_lib.QUANTIZATIONS:
            tflite[q] = export_lib.convert_tflite(module, q, float32_content=tflite.get("float32"))
        # Dynamic range on every layer, the first convolution included (what export.py made before).
        tflite["int8_all_layers"] = export_lib._convert(module, "int8", None)
        if not args.no_full_int8:
            representative = export_lib.synthetic_images(8, 128, 128, seed=7)
            if photos:
                representative = export_lib.load_parity_images(sample_photos(8), 128, 128)
            tflite["int8_full"] = export_lib.convert_tflite(module, "int8_full", representative_images=representative)
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
            out["breakdown_ms"] = {"size": largest, **layer_breakdown(module, largest, args.threads, clock, args.repeats)}

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
