"""One training process for the multi-worker tests (not a test itself).

    TF_CONFIG=... python tests/multiworker_worker.py --config=cfg.json --workdir=run --cache=dir --out=w.npz

Trains `--config` (a TrainConfig as JSON) through `trainer_lib.Trainer` exactly as train.py
does, then writes this process's state to `--out` (.npz): "initial/<name>" and "final/<name>"
for the four networks' weights and both optimizers' variables. That is how a test reads the
weights a non-chief worker ends with; its checkpoints are scratch and deleted, by design.

Failure injection: --die_after_step=N kills the process with SIGKILL (kill -9: no checkpoint,
no goodbye to the cluster) once global step N is done: a worker that crashes or loses its
machine. These keep it alive but stuck, a worker that hangs: --hang_loading_data (before the
model is built, so before TensorFlow's broadcast of the initial weights), --hang_building_model
(inside that broadcast), --hang_before_training (after building the model, where the chief's
first collective checks the workers restored the same step), --hang_after_step=N.
--overflow_first_step makes this worker's float16 gradients of the first step non-finite
(the other workers' stay finite); --loss_scale sets the initial float16 loss scale.
--record_steps also writes "step<N>/<name>" after every step N.
Exit codes: 0 trained, 3 a clear error (its message on stderr), 4 any other exception.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def state(trainer) -> dict:
    m = trainer.model
    out = {}
    for net in (m.gen_g, m.gen_f, m.disc_a, m.disc_b):
        for i, v in enumerate(net.weights):
            out[f"{net.name}/{i:03d}/{v.path}"] = v.numpy()
    for opt in (m.optimizer_g, m.optimizer_d):
        for i, v in enumerate(opt.variables):
            out[f"{opt.name}/{i:03d}/{v.path}"] = v.numpy()
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--out")
    p.add_argument("--max_steps", type=int)
    p.add_argument("--die_after_step", type=int)
    p.add_argument("--hang_after_step", type=int)
    p.add_argument("--hang_before_training", action="store_true")
    p.add_argument("--hang_loading_data", action="store_true")
    p.add_argument("--hang_building_model", action="store_true")
    p.add_argument("--overflow_first_step", action="store_true")
    p.add_argument("--loss_scale", type=float)
    p.add_argument("--record_steps", action="store_true")
    args = p.parse_args()

    import tensorflow as tf

    from tfcyclegan import config as config_lib
    from tfcyclegan import data as data_lib
    from tfcyclegan.runtime import cluster
    from tfcyclegan.train import trainer as trainer_lib
    from tfcyclegan.model.workdir import checkpoint_dir

    config = config_lib.TrainConfig.from_dict(json.loads(Path(args.config).read_text()))

    losses_by_step, scales_by_step, states_by_step = {}, {}, {}
    trainer = None

    def hang(*args, **kwargs):
        print("worker: hanging before training", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)

    def on_step(position, losses):
        losses_by_step[position.global_step] = losses
        if trainer.precision == "mixed_float16":
            scales_by_step[position.global_step] = [float(o.dynamic_scale.numpy())
                                                    for o in (trainer.model.optimizer_g, trainer.model.optimizer_d)]
        if args.record_steps:
            states_by_step[position.global_step] = state(trainer)
        if args.hang_after_step is not None and position.global_step >= args.hang_after_step:
            print(f"worker: hanging after global step {position.global_step}", file=sys.stderr, flush=True)
            while True:
                time.sleep(3600)
        if args.die_after_step is not None and position.global_step >= args.die_after_step:
            print(f"worker: kill -9 after global step {position.global_step}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    start = time.perf_counter()
    try:
        # As trainer_lib.run does it, keeping the Trainer to read its weights.
        with cluster.explain_cluster_errors(checkpoint_dir(args.workdir), timeout=config.worker_timeout):
            if args.hang_before_training:
                cluster.check_workers_agree = hang
            if args.hang_loading_data:
                data_lib.load_domains = hang
            if args.hang_building_model:
                trainer_lib.CycleGAN = hang
            trainer = trainer_lib.Trainer(config, args.workdir, data_cache_dir=args.cache, on_step=on_step, quiet=True)
            if args.overflow_first_step:
                agree = cluster.agree_on_overflow
                calls = tf.Variable(0, dtype=tf.int64, trainable=False)  # this worker's own counter

                def overflow_first_step(optimizer, grads):
                    # This worker's first gradient of step 1 (its first two calls: optimizer_g,
                    # then optimizer_d) becomes inf. The losses stay finite.
                    bad = tf.where(calls < 2, float("inf"), 0.0)
                    calls.assign_add(1)
                    return agree(optimizer, [grads[0] + tf.cast(bad, grads[0].dtype), *grads[1:]])

                cluster.agree_on_overflow = overflow_first_step  # before the step is traced
            if args.loss_scale:
                for opt in (trainer.model.optimizer_g, trainer.model.optimizer_d):
                    opt.dynamic_scale.assign(args.loss_scale)
            initial = state(trainer)
            result = trainer.run(max_steps=args.max_steps)
    except (config_lib.ConfigError, trainer_lib.WorkdirError, cluster.ClusterError) as e:
        print(f"worker: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 3
    except Exception as e:  # noqa: BLE001 -- reported to the test through stderr and the exit code
        print(f"worker: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 4
    if args.out:
        import numpy as np

        steps = {f"step{n}/{k}": v for n, values in states_by_step.items() for k, v in values.items()}
        np.savez(args.out, **{f"initial/{k}": v for k, v in initial.items()},
                 **{f"final/{k}": v for k, v in state(trainer).items()}, **steps)
    print(json.dumps({"chief": trainer.chief, "global_step": result.position.global_step, "finished": result.finished,
                      "stopped_by": result.stopped_by, "replicas": trainer.strategy.num_replicas_in_sync,
                      "restored_from": trainer.restored_from, "seconds": round(time.perf_counter() - start, 2),
                      "losses": losses_by_step, "loss_scales": scales_by_step}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
