"""Train a CycleGAN.

    python train.py --dataset=synthetic --schedule=demo --workdir=runs/demo   # embedded data, CPU minutes
    python train.py --task=age --data_dir=~/UTKFace --schedule=progressive    # UTKFace 20s <-> 50s
    python train.py --dataset=folder --data_dir=~/selfie2anime --preset=selfie2anime

Re-running the same command in the same workdir resumes from the newest checkpoint.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags, logging

from tfcyclegan import train_flags

train_flags.define_flags()
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    from tfcyclegan import config as config_lib

    try:
        config = train_flags.config_from_flags(FLAGS)
    except config_lib.ConfigError as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 2
    # Imported here so --help and flag errors answer without loading TensorFlow.
    from tfcyclegan import data as data_lib
    from tfcyclegan import distribute
    from tfcyclegan import schedule

    workdir = FLAGS.workdir or train_flags.default_workdir(config)
    try:
        if FLAGS.dry_run:
            domains = data_lib.load_domains(config.data, cache_dir=FLAGS.cache_dir)
            print(json.dumps({"workdir": workdir, "config": config.to_dict(), **domains.stats}, indent=2))
            return 0
        result = schedule.run(config, workdir, max_steps=FLAGS.max_steps, data_cache_dir=FLAGS.cache_dir)
    except (config_lib.ConfigError, data_lib.DataError, schedule.WorkdirError, schedule.TrainingDiverged,
            distribute.ClusterError) as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"workdir": workdir, "finished": result.finished, "stopped_by": result.stopped_by,
                      "global_step": result.position.global_step, "checkpoint": result.last_checkpoint}))
    return 0


if __name__ == "__main__":
    app.run(main)
