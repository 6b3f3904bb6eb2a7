"""Multi-worker training as local processes on loopback (TF_CONFIG with 127.0.0.1 ports, CPU).

Each worker is a subprocess running tests/multiworker_worker.py (schedule.Trainer, as
train.py runs it) or train.py itself: MultiWorkerMirroredStrategy must be created before
TensorFlow starts in a process, which the pytest process is long past.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tfcyclegan import data as data_lib
from tfcyclegan import distribute

from conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "multiworker_worker.py"
TINY_FLAGS = ["--gen_filters=8", "--gen_blocks=1", "--disc_filters=8", "--synthetic_count=120", "--batch_size=2"]


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _env(tf_config: dict | None = None, **extra) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return {**env, **extra}


def _cluster(ports: list[int], index: int) -> dict:
    return {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}


def _worker(config_path: Path, workdir: Path, cache: str, *args, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), f"--config={config_path}", f"--workdir={workdir}",
                             f"--cache={cache}", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"process {proc.args} still running after {timeout} s:\n{err[-3000:]}")
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def warm_cache(synthetic_cache):
    """Generates the tiny synthetic faces once, so concurrent workers only read the cache."""
    data_lib.load_domains(tiny_config().data, cache_dir=synthetic_cache)
    return synthetic_cache


# -- bad input: clear errors before any work --------------------------------------------------------

def test_train_py_with_a_malformed_tf_config_fails_before_any_work(tmp_path, warm_cache):
    workdir = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), f"--workdir={workdir}", f"--cache_dir={warm_cache}",
                           *TINY_FLAGS], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=_env(TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:2222"]}, "task": {"type": "worker", '))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "train.py: TF_CONFIG is not valid JSON" in proc.stderr
    assert not workdir.exists()  # nothing written, nothing trained


def test_a_worker_that_never_starts_makes_the_other_give_up_with_a_message(tmp_path, warm_cache):
    """Worker 1 of TF_CONFIG never comes up: worker 0 stops after the worker timeout."""
    workdir = tmp_path / "run"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), f"--workdir={workdir}", f"--cache_dir={warm_cache}",
                           *TINY_FLAGS], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=_env(_cluster(_free_ports(2), 0), **{distribute.WORKER_TIMEOUT_ENV: "5"}))
    assert proc.returncode != 0
    assert "Gave up after 5 s waiting for the other workers to start (this process is worker 0" in proc.stderr, \
        proc.stderr[-3000:]
    assert not workdir.exists()
    assert time.perf_counter() - start < 240


# -- two workers against one process ---------------------------------------------------------------

# Why "close" and not "equal": the two-worker run sums two half-batch gradients in an
# all-reduce, the single process sums the whole batch inside each convolution's backward
# pass; float32 rounds the two orders differently (~1e-7 relative). Adam then amplifies the
# rounding where a gradient is essentially zero (the biases of convolutions followed by
# instance norm have a true gradient of 0, and Adam's normalized first steps move them by
# about +-lr whatever the sign of the noise), and the L1 cycle loss's sign flips on pixels
# that are equal to rounding. So we compare, per network, the *update* of the weights
# (final - initial) and require the two runs' updates to differ by < UPDATE_RTOL of its norm
# (measured: 0.2-0.5%); the Adam moments, which scale with the gradients (a global batch
# averaged wrongly would double them), within MOMENT_RTOL (measured: 1e-6 to 0.13% by seed);
# and the first step's losses (same weights, same examples) within 1e-5. Both workers must
# agree exactly.
UPDATE_RTOL = 0.05
MOMENT_RTOL = 0.01
FIRST_LOSS_RTOL = 1e-5


def _groups(arrays: dict, stage: str) -> dict[str, list[np.ndarray]]:
    groups: dict[str, list[np.ndarray]] = {}
    for key in sorted(arrays):
        if key.startswith(stage + "/"):
            owner = key.split("/")[1]
            groups.setdefault(owner, []).append(arrays[key].astype(np.float64))
    return groups


def _relative(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    diff = np.sqrt(sum(np.sum((x - y) ** 2) for x, y in zip(a, b)))
    return diff / np.sqrt(sum(np.sum(y**2) for y in b))


@pytest.mark.slow
def test_two_workers_hold_identical_weights_equal_to_one_process_with_the_same_global_batch(tmp_path, warm_cache):
    # pool_size 50 > the 12 fakes of 3 steps: the pools only fill (and return their input), so
    # one pool per worker and one for the single process see the same thing.
    common = dict(steps_per_epoch=3, deterministic=True, pool_size=50, seed=3)
    two = tmp_path / "two.json"
    two.write_text(tiny_config(batch_size=2, strategy="multi_worker", **common).to_json())
    one = tmp_path / "one.json"
    one.write_text(tiny_config(batch_size=4, strategy="mirrored", **common).to_json())
    ports = _free_ports(2)
    # All three at once: each spends most of its time tracing, on one core.
    procs = [_worker(two, tmp_path / "cluster", warm_cache, f"--out={tmp_path}/w{i}.npz", env=_env(_cluster(ports, i)))
             for i in range(2)]
    procs.append(_worker(one, tmp_path / "single", warm_cache, f"--out={tmp_path}/one.npz", env=_env()))
    results = []
    try:
        for proc in procs:
            code, out, err = _finish(proc, timeout=600)
            assert code == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert [(r["chief"], r["replicas"], r["global_step"]) for r in results] == [(True, 2, 3), (False, 2, 3), (True, 1, 3)]

    w0, w1, single = (dict(np.load(tmp_path / f"{name}.npz")) for name in ("w0", "w1", "one"))
    assert w0.keys() == w1.keys() == single.keys()
    for key in w0:
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)  # the workers agree exactly
        if key.startswith("initial/"):
            np.testing.assert_array_equal(w0[key], single[key], err_msg=key)  # same seed, same start

    # Step 1 ran on the same weights and the same four examples.
    for name, value in results[0]["losses"]["1"].items():
        assert value == pytest.approx(results[2]["losses"]["1"][name], rel=FIRST_LOSS_RTOL, abs=1e-6), name

    initial, final_two, final_one = _groups(w0, "initial"), _groups(w0, "final"), _groups(single, "final")
    for net in ("gen_g", "gen_f", "disc_a", "disc_b"):
        update_two = [f - i for f, i in zip(final_two[net], initial[net])]
        update_one = [f - i for f, i in zip(final_one[net], initial[net])]
        assert all(np.any(u != 0) for u in update_one[::2]), net  # every kernel trained
        assert _relative(update_two, update_one) < UPDATE_RTOL, net
    for opt in ("optimizer_g", "optimizer_d"):
        assert _relative(final_two[opt], final_one[opt]) < MOMENT_RTOL, opt

    # Only the chief keeps checkpoints; the other worker's scratch folder is gone.
    names = set(os.listdir(tmp_path / "cluster"))
    assert "checkpoints" in names and not [n for n in names if n.startswith(".worker_")], names
    assert any(n.startswith("ckpt-3") for n in os.listdir(tmp_path / "cluster" / "checkpoints"))


@pytest.mark.slow
def test_a_hung_worker_makes_the_others_fail_with_a_message_not_wait_forever(tmp_path, warm_cache):
    """Worker 1 stays alive (its heartbeats continue) but stops before training: worker 0's
    next collective times out after the worker timeout, and it exits with a message saying
    how to resume. (TensorFlow's broadcast of the initial weights has no timeout, so the
    worker hangs after it, not before; a hang inside the train step ends the same way, in
    the step's all-reduce.)"""
    config = tmp_path / "two.json"
    config.write_text(tiny_config(strategy="multi_worker", steps_per_epoch=3).to_json())
    ports = _free_ports(2)
    timeout = {distribute.WORKER_TIMEOUT_ENV: "20"}
    chief = _worker(config, tmp_path / "run", warm_cache, env=_env(_cluster(ports, 0), **timeout))
    hung = _worker(config, tmp_path / "run", warm_cache, "--hang_before_training", env=_env(_cluster(ports, 1), **timeout))
    try:
        start = time.perf_counter()
        code, out, err = _finish(chief, timeout=300)
        assert code == 3, err[-3000:]
        assert "worker 0 lost the other workers (DeadlineExceededError" in err, err[-3000:]
        assert "at most 20 s" in err and "resume from the start (no checkpoint yet)" in err
        assert time.perf_counter() - start < 240
    finally:
        hung.kill()
        hung.communicate()
