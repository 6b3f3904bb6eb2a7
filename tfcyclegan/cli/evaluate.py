"""tfcyclegan-evaluate: metrics and a report for a trained workdir, and the attribute oracle.

    tfcyclegan-evaluate --workdir=runs/age [--data_dir=...] [--split=test] --output=reports/age \
        [--oracle=oracles/age] [--inception_weights=imagenet|download|random|none|PATH]
    tfcyclegan-evaluate train_oracle --task=age --data_dir=... --output=oracles/age

What is measured: tfcyclegan.eval.evaluate. Exit status: 0 done, 1 an error (the message says which).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Mapping, Sequence

from tfcyclegan.cli import run_command
from tfcyclegan.eval.evaluate import (
    DEFAULT_PANEL_COUNT,  # no TensorFlow at import: --help stays fast
)


def _define_flags():
    from absl import flags

    flags.DEFINE_string("workdir", None, "Training workdir (config.json, checkpoints/, logs/).")
    flags.DEFINE_string("output", None, "Report directory (evaluate) or oracle directory (train_oracle).")
    flags.DEFINE_string("data_dir", None, "Your copy of the data (overrides the workdir's data.data_dir).")
    flags.DEFINE_enum("split", "test", ["test", "train"], "Which split to evaluate.")
    flags.DEFINE_integer("size", 0, "Image size (0: the last stage of the run; 64 for train_oracle).")
    flags.DEFINE_integer("count", 0, "At most this many images per domain (0: all).")
    flags.DEFINE_integer("panel_count", DEFAULT_PANEL_COUNT, "Triplets per direction in the panel.")
    flags.DEFINE_integer("seed", 0, "Seed of the panel sample, KID subsets and oracle training.")
    flags.DEFINE_string(
        "inception_weights", "imagenet",
        "imagenet (Keras cache only, never downloads), download (let Keras fetch them), PATH to an .h5 file, "
        "random (tests only: the report marks FID/KID as meaningless), or none (no FID/KID; every other figure).",
    )
    flags.DEFINE_string("oracle", None, "Oracle directory (train_oracle --output) for flip rates.")
    flags.DEFINE_integer("batch_size", 0, "Batch size (0: 8 for evaluation, 32 for train_oracle).")
    flags.DEFINE_integer("kid_subsets", 100, "KID: number of random subsets.")
    flags.DEFINE_integer("kid_subset_size", 1000, "KID: images per subset (whole sets if smaller).")
    flags.DEFINE_string("cache_dir", None, "Data cache directory (synthetic faces, file index).")
    # train_oracle
    flags.DEFINE_enum("task", "age", ["age", "ethnicity", "gender"], "train_oracle: the two UTKFace domains.")
    flags.DEFINE_string("dataset", None, "train_oracle: synthetic, utkface or folder (default: utkface with --data_dir, else synthetic).")
    flags.DEFINE_string("domain_a", None, "train_oracle: custom filter of domain A, e.g. age:20-29.")
    flags.DEFINE_string("domain_b", None, "train_oracle: custom filter of domain B.")
    flags.DEFINE_integer("epochs", 30, "train_oracle: epochs of the cosine schedule (early stopping from half-way).")
    flags.DEFINE_integer("patience", 6, "train_oracle: epochs without validation improvement before stopping.")


def _oracle_data_config(FLAGS):
    from tfcyclegan.config import DataConfig
    from tfcyclegan.model.workdir import read_config

    if FLAGS.workdir:
        data_cfg = read_config(FLAGS.workdir).data
        if FLAGS.data_dir:
            data_cfg = dataclasses.replace(data_cfg, data_dir=FLAGS.data_dir)
        return data_cfg
    dataset = FLAGS.dataset or ("utkface" if FLAGS.data_dir else "synthetic")
    return DataConfig(dataset=dataset, data_dir=FLAGS.data_dir, task=FLAGS.task, domain_a=FLAGS.domain_a, domain_b=FLAGS.domain_b)


def main(argv: Sequence[str]) -> None:
    from absl import flags

    FLAGS = flags.FLAGS
    command = argv[1] if len(argv) > 1 else "evaluate"
    if command not in ("evaluate", "train_oracle") or len(argv) > 2:
        sys.exit(f"Unknown command {' '.join(argv[1:])!r}: use no command (evaluate) or train_oracle.")
    if not FLAGS.output:
        sys.exit("--output is required (the report directory, or the oracle directory for train_oracle).")
    if command == "evaluate":
        if not FLAGS.workdir:
            sys.exit("--workdir is required.")
        if not os.path.isdir(FLAGS.workdir):  # before TensorFlow loads: a typo should fail in a second
            sys.exit(f"error: Workdir {FLAGS.workdir!r} does not exist.")
    # Imported here so --help and a mistyped workdir answer without loading TensorFlow.
    from tfcyclegan.config import ConfigError
    from tfcyclegan.data import DataError
    from tfcyclegan.eval import metrics as metrics_lib
    from tfcyclegan.eval import oracle as oracle_lib
    from tfcyclegan.eval.evaluate import (
        ORACLE_DEFAULT_SIZE,
        EvaluationError,
        evaluate_workdir,
        train_oracle_command,
    )
    from tfcyclegan.model.workdir import CheckpointError

    errors = (EvaluationError, CheckpointError, ConfigError, DataError, oracle_lib.OracleError, metrics_lib.MetricsError)
    try:
        if command == "train_oracle":
            oracle = train_oracle_command(
                FLAGS.output, data_cfg=_oracle_data_config(FLAGS), size=FLAGS.size or ORACLE_DEFAULT_SIZE,
                epochs=FLAGS.epochs, batch_size=FLAGS.batch_size or 32, patience=FLAGS.patience, seed=FLAGS.seed,
                cache_dir=FLAGS.cache_dir,
            )
            m = oracle.meta
            print(
                f"Oracle saved to {FLAGS.output}: test accuracy {100 * m['test_accuracy']:.1f} % "
                f"(A {100 * m['test_accuracy_a']:.1f} %, B {100 * m['test_accuracy_b']:.1f} %, "
                f"balanced {100 * m['balanced_test_accuracy']:.1f} %) on {m['counts']['test_a']} + {m['counts']['test_b']} test images."
            )
            return
        from tfcyclegan.model.workdir import read_config

        if read_config(FLAGS.workdir).kind == "dcgan":
            from tfcyclegan.eval.dcgan import evaluate_dcgan

            report = evaluate_dcgan(
                FLAGS.workdir, FLAGS.output, count=FLAGS.count or None, seed=FLAGS.seed, data_dir=FLAGS.data_dir,
                inception_weights=FLAGS.inception_weights, batch_size=FLAGS.batch_size or 16,
                kid_subsets=FLAGS.kid_subsets, kid_subset_size=FLAGS.kid_subset_size, cache_dir=FLAGS.cache_dir,
            )
            memo = report["memorisation"]
            print(f"Report: {os.path.join(FLAGS.output, 'index.html')} (step {report['checkpoint']['global_step']})\n"
                  f"  FID {report['fid']:.2f}, KID {report['kid']['mean']:.4f}, mean-image distance "
                  f"{report['mean_image_distance']:.3f}, memorisation ratio {memo['ratio']:.2f} (nearest training image "
                  f"{memo['sample_nn_median']:.3f} vs {memo['train_nn_median']:.3f} between training images)"
                  + "".join(f"\n  warning: {w}" for w in report["warnings"]))
            return
        report = evaluate_workdir(
            FLAGS.workdir, FLAGS.output, data_dir=FLAGS.data_dir, split=FLAGS.split, size=FLAGS.size or None,
            count=FLAGS.count or None, panel_count=FLAGS.panel_count, seed=FLAGS.seed,
            inception_weights=FLAGS.inception_weights, oracle_dir=FLAGS.oracle, batch_size=FLAGS.batch_size or 8,
            kid_subsets=FLAGS.kid_subsets, kid_subset_size=FLAGS.kid_subset_size, cache_dir=FLAGS.cache_dir,
        )
    except errors as e:
        sys.exit(f"error: {e}")
    print(_summary(report, FLAGS.output))


def _summary(report: Mapping[str, Any], output: str) -> str:
    lines = [f"Report: {os.path.join(output, 'index.html')} (step {report['checkpoint']['global_step']})"]
    for name, d in report["directions"].items():
        parts = []
        if d.get("fid"):
            parts.append(f"FID {d['fid']['translated']:.2f} (untranslated {d['fid']['untranslated']:.2f}), "
                         f"KID {d['kid']['translated']['mean']:.4f} (untranslated {d['kid']['untranslated']['mean']:.4f})")
        flip = d["flip_rate"]
        if flip:
            parts.append(f"flip {100 * flip['translated']:.1f} % (untranslated {100 * flip['untranslated']:.1f} %, "
                         f"real target {100 * flip['oracle_on_real_target']:.1f} %)")
        parts.append(f"cycle L1 {d['cycle_l1']:.4f}, identity L1 {d['identity_l1']:.4f}")
        art = d["artefacts"]
        parts.append(f"artefact ratio {art['artefact_ratio']:.2f}, sharpness ratio {art['sharpness_ratio']:.2f}")
        lines.append(f"  {name}: " + ", ".join(parts))
    lines.extend(f"  warning: {w}" for w in report["warnings"])
    return "\n".join(lines)


def run() -> None:
    """Console entry point: tfcyclegan-evaluate, python -m tfcyclegan.cli.evaluate."""
    run_command(_define_flags, main)


if __name__ == "__main__":
    run()
