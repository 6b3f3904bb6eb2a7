"""One training process for the multi-worker tests (not a test itself).

    TF_CONFIG=... python tests/multiworker_worker.py --config=cfg.json --workdir=run --cache=dir --out=w.npz

Trains `--config` (a TrainConfig as JSON) through `schedule.Trainer` exactly as train.py
does, then writes this process's state to `--out` (.npz): "initial/<name>" and "final/<name>"
for the four networks' weights and both optimizers' variables. That is how a test reads the
weights a non-chief worker ends with; its checkpoints are scratch and deleted, by design.

Failure injection: --die_after_step=N ends the process abruptly (os._exit, no checkpoint, no
goodbye to the cluster) once global step N is done: a worker that crashes or loses its
machine. --hang_after_step=N, and --hang_before_training (after building the model, where the
chief's first collective checks the workers restored the same step), keep it alive but
stuck: a worker that hangs.
Exit codes: 0 trained, 3 a clear error (its message on stderr), 4 any other exception.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
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
    args = p.parse_args()

    from tfcyclegan import config as config_lib
    from tfcyclegan import distribute, schedule
    from tfcyclegan.checkpoint import checkpoint_dir

    config = config_lib.TrainConfig.from_dict(json.loads(Path(args.config).read_text()))

    losses_by_step = {}

    def hang(*args, **kwargs):
        print("worker: hanging before training", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)

    def on_step(position, losses):
        losses_by_step[position.global_step] = losses
        if args.hang_after_step is not None and position.global_step >= args.hang_after_step:
            print(f"worker: hanging after global step {position.global_step}", file=sys.stderr, flush=True)
            while True:
                time.sleep(3600)
        if args.die_after_step is not None and position.global_step >= args.die_after_step:
            print(f"worker: dying abruptly after global step {position.global_step}", file=sys.stderr, flush=True)
            os._exit(9)

    start = time.perf_counter()
    try:
        # As schedule.run does it, keeping the Trainer to read its weights.
        with distribute.explain_cluster_errors(checkpoint_dir(args.workdir)):
            if args.hang_before_training:
                distribute.check_workers_agree = hang
            trainer = schedule.Trainer(config, args.workdir, data_cache_dir=args.cache, on_step=on_step, quiet=True)
            initial = state(trainer)
            result = trainer.run(max_steps=args.max_steps)
    except (config_lib.ConfigError, schedule.WorkdirError, distribute.ClusterError) as e:
        print(f"worker: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 3
    except Exception as e:  # noqa: BLE001 -- reported to the test through stderr and the exit code
        print(f"worker: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 4
    if args.out:
        import numpy as np

        np.savez(args.out, **{f"initial/{k}": v for k, v in initial.items()},
                 **{f"final/{k}": v for k, v in state(trainer).items()})
    print(json.dumps({"chief": trainer.chief, "global_step": result.position.global_step, "finished": result.finished,
                      "stopped_by": result.stopped_by, "replicas": trainer.strategy.num_replicas_in_sync,
                      "seconds": round(time.perf_counter() - start, 2), "losses": losses_by_step}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
