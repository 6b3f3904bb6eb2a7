"""Preemption: SIGTERM to a real train.py process in the middle of an epoch, then a resume.

A preempted cloud VM gets SIGTERM and a short grace period. train.py turns it into "finish
this step, write a checkpoint, exit 0"; running the same command again continues from that
checkpoint. With --deterministic the resumed run ends with exactly the weights, optimizer
state, image pools and position of a run that was never interrupted.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfcyclegan import data as data_lib

from conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 8
FLAGS = ["--gen_filters=8", "--gen_blocks=1", "--disc_filters=8", "--synthetic_count=120", "--batch_size=2",
         "--schedule=32:1,36:1", f"--steps_per_epoch={STEPS_PER_EPOCH}", "--checkpoint_every_steps=2",
         "--deterministic", "--seed=5"]


def _train(workdir: Path, cache: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    env.pop("TF_CONFIG", None)
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), f"--workdir={workdir}", f"--cache_dir={cache}", *FLAGS],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _result(proc: subprocess.Popen) -> tuple[dict, str]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]), err


def _checkpoint_values(workdir: Path) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(workdir / "checkpoints")))
    names = [n for n in reader.get_variable_to_shape_map() if n != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    # save_counter counts saves, and the interrupted run saved more often.
    return {n: reader.get_tensor(n) for n in names if not n.startswith("save_counter")}


@pytest.mark.slow
def test_sigterm_mid_epoch_then_resume_equals_an_uninterrupted_run_bit_for_bit(tmp_path, synthetic_cache):
    data_lib.load_domains(tiny_config().data, cache_dir=synthetic_cache)  # generated once, read by both runs
    procs = []
    try:
        straight = _train(tmp_path / "straight", synthetic_cache)
        interrupted_dir = tmp_path / "interrupted"
        interrupted = _train(interrupted_dir, synthetic_cache)
        procs += [straight, interrupted]
        # The first periodic checkpoint (step 2) proves training is under way: preempt it then.
        deadline = time.monotonic() + 480
        while not (interrupted_dir / "checkpoints" / "checkpoint").exists():
            assert interrupted.poll() is None, interrupted.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 480 s"
            time.sleep(0.05)
        interrupted.send_signal(signal.SIGTERM)
        stopped, err = _result(interrupted)
        assert stopped["stopped_by"] == "SIGTERM" and not stopped["finished"]
        assert 3 <= stopped["global_step"] < STEPS_PER_EPOCH, stopped  # in the middle of the first epoch
        assert stopped["checkpoint"].endswith(f"ckpt-{stopped['global_step']}")
        assert "Stopped by SIGTERM" in err

        resumed_proc = _train(interrupted_dir, synthetic_cache)
        procs.append(resumed_proc)
        resumed, err = _result(resumed_proc)
        assert f"Resuming from {stopped['checkpoint']}" in err
        expected, _ = _result(straight)
        assert resumed["finished"] and expected["finished"] and resumed["global_step"] == expected["global_step"] == 16
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    want, got = _checkpoint_values(tmp_path / "straight"), _checkpoint_values(interrupted_dir)
    assert want.keys() == got.keys()
    # The networks' weights are saved once, under the optimizers' _trainable_variables.
    # The pools are saved per replica (stacked), with the replica count that wrote them.
    assert {"progress/global_step/.ATTRIBUTES/VARIABLE_VALUE", "progress/replicas/.ATTRIBUTES/VARIABLE_VALUE",
            "pool_a/replica_images/.ATTRIBUTES/VARIABLE_VALUE"} <= want.keys()
    assert want["pool_a/replica_images/.ATTRIBUTES/VARIABLE_VALUE"].shape == (1, 50, 36, 36, 3)
    assert "pool_a/images/.ATTRIBUTES/VARIABLE_VALUE" not in want  # replica 0's alone: not saved
    assert all(any(n.startswith(f"{opt}/_trainable_variables/") for n in want) for opt in ("optimizer_g", "optimizer_d"))
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
