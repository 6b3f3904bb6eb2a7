"""Strategy choice, TF_CONFIG validation, chief election and the cross-worker helpers (in-process).

Multi-worker training itself runs in subprocesses (tests/test_multiworker.py): the
collectives of MultiWorkerMirroredStrategy must be configured before TensorFlow starts, so a
pytest process that already ran TensorFlow cannot create one.
"""

import json
import socket
import types

import pytest
import tensorflow as tf

from tfcyclegan import distribute
from tfcyclegan.config import ConfigError


@pytest.fixture
def no_cluster(monkeypatch):
    """Fails the test if anything tries to create a real multi-worker strategy in this process."""

    def refuse(*args, **kwargs):
        raise AssertionError("MultiWorkerMirroredStrategy was created: the bad TF_CONFIG was not caught")

    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", refuse)
    monkeypatch.delenv(distribute.WORKER_TIMEOUT_ENV, raising=False)
    return monkeypatch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tf_config(workers, index=0, task_type="worker", **cluster):
    return json.dumps({"cluster": {"worker": workers, **cluster}, "task": {"type": task_type, "index": index}})


GOOD = ["127.0.0.1:1", "127.0.0.1:2"]  # never bound: every case below fails before that


@pytest.mark.parametrize("raw,message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'TF_CONFIG needs a "cluster" object'),
    ('{"cluster": {}, "task": {"type": "worker", "index": 0}}', 'TF_CONFIG needs a "cluster" object'),
    (_tf_config("127.0.0.1:1"), 'cluster["worker"] must be a non-empty list'),
    (_tf_config(["127.0.0.1"]), "not \"host:port\". Received: '127.0.0.1'"),
    (_tf_config(["127.0.0.1:99999"]), "not \"host:port\""),
    (_tf_config(GOOD, ps=["127.0.0.1:3"]), "no parameter servers"),
    (_tf_config(["127.0.0.1:1", "127.0.0.1:1"]), "lists 127.0.0.1:1 twice"),
    (_tf_config(GOOD, chief=["127.0.0.1:3", "127.0.0.1:4"]), 'may have one "chief"'),
    (json.dumps({"cluster": {"worker": GOOD}}), 'TF_CONFIG needs "task"'),
    (_tf_config(GOOD, index=2), "does not name a member of cluster"),
    (_tf_config(GOOD, index=-1), "does not name a member of cluster"),
    (_tf_config(GOOD, index="1"), "does not name a member of cluster"),
    (_tf_config(GOOD, task_type="chief"), "does not name a member of cluster"),
])
def test_malformed_tf_config_is_a_clear_error_before_any_work(no_cluster, raw, message):
    no_cluster.setenv("TF_CONFIG", raw)
    for name in ("auto", "multi_worker"):
        with pytest.raises(ConfigError) as err:
            distribute.make_strategy(name)
        assert message in str(err.value)


def test_tf_config_naming_a_port_already_in_use_is_refused(no_cluster):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        no_cluster.setenv("TF_CONFIG", _tf_config([f"127.0.0.1:{_free_port()}", f"127.0.0.1:{port}"], index=1))
        with pytest.raises(ConfigError, match=rf"this process worker 1 at 127.0.0.1:{port}, but port {port} is already in use"):
            distribute.make_strategy("auto")


def test_tf_config_naming_another_machines_address_is_refused(no_cluster):
    # 192.0.2.0/24 is TEST-NET-1: never an address of this machine.
    no_cluster.setenv("TF_CONFIG", _tf_config(["192.0.2.10:2222", "192.0.2.11:2222"], index=1))
    with pytest.raises(ConfigError, match="192.0.2.11 is not an address of this machine"):
        distribute.make_strategy("multi_worker")


def test_a_cluster_with_a_single_process_strategy_is_refused(no_cluster):
    no_cluster.setenv("TF_CONFIG", _tf_config([f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]))
    with pytest.raises(ConfigError, match="--strategy=mirrored trains alone"):
        distribute.make_strategy("mirrored")


def test_unknown_strategy_lists_the_valid_ones(no_cluster):
    with pytest.raises(ConfigError, match="auto, mirrored, multi_worker or one_device"):
        distribute.make_strategy("parameter_server")


def test_without_tf_config_auto_is_mirrored_and_the_process_is_chief(no_cluster):
    no_cluster.delenv("TF_CONFIG", raising=False)
    strategy = distribute.make_strategy("auto")
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert distribute.is_chief(strategy) and distribute.num_workers(strategy) == 1
    assert distribute.task_name(strategy) == "this process"
    assert isinstance(distribute.make_strategy("one_device"), tf.distribute.OneDeviceStrategy)


def test_worker_timeout_default_environment_and_bad_values(monkeypatch):
    monkeypatch.delenv(distribute.WORKER_TIMEOUT_ENV, raising=False)
    assert distribute.worker_timeout() == distribute.DEFAULT_WORKER_TIMEOUT == 600
    monkeypatch.setenv(distribute.WORKER_TIMEOUT_ENV, "45")
    assert distribute.worker_timeout() == 45
    monkeypatch.setenv(distribute.WORKER_TIMEOUT_ENV, "0")
    assert distribute.worker_timeout() is None  # 0 = wait forever
    assert distribute.worker_timeout(12) == 12
    for bad in ("ten", "-1"):
        monkeypatch.setenv(distribute.WORKER_TIMEOUT_ENV, bad)
        with pytest.raises(ConfigError, match=distribute.WORKER_TIMEOUT_ENV if bad == "ten" else ">= 0 seconds"):
            distribute.worker_timeout()


def _fake_strategy(cluster: dict, task_type: str, task_id: int):
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id)
    return types.SimpleNamespace(cluster_resolver=resolver)


@pytest.mark.parametrize("cluster,task_type,task_id,chief", [
    ({"worker": GOOD}, "worker", 0, True),
    ({"worker": GOOD}, "worker", 1, False),
    ({"chief": ["127.0.0.1:3"], "worker": GOOD}, "chief", 0, True),
    ({"chief": ["127.0.0.1:3"], "worker": GOOD}, "worker", 0, False),
])
def test_chief_is_the_chief_task_or_worker_0(cluster, task_type, task_id, chief):
    strategy = _fake_strategy(cluster, task_type, task_id)
    assert distribute.is_chief(strategy) == chief
    assert distribute.num_workers(strategy) == sum(len(v) for v in cluster.values())
    assert distribute.task_name(strategy) == f"{task_type} {task_id}"


def test_single_process_helpers_change_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = tf.distribute.get_strategy()
    assert distribute.agreed_stop(strategy, "SIGTERM") == "SIGTERM"
    assert distribute.agreed_stop(strategy, None) is None
    distribute.check_workers_agree(strategy, 7, str(tmp_path))  # nothing to compare with
    grads = [tf.constant([1.0, float("inf")])]
    assert distribute.agree_on_overflow(None, grads) is grads  # one replica: Keras decides alone
    with pytest.raises(tf.errors.UnavailableError):  # not in a cluster: the error passes unchanged
        with distribute.explain_cluster_errors(str(tmp_path)):
            raise tf.errors.UnavailableError(None, None, "socket closed")


def test_a_lost_worker_becomes_a_message_that_says_how_to_resume(monkeypatch, tmp_path):
    monkeypatch.setenv("TF_CONFIG", _tf_config(GOOD, index=1))
    monkeypatch.setenv(distribute.WORKER_TIMEOUT_ENV, "30")
    checkpoints = tmp_path / "checkpoints"
    tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)), str(checkpoints), max_to_keep=1).save(12)
    aborted = ("Graph execution error:\n\nCollective ops is aborted by: Error reported from /job:worker/task:0: "
               "The following tasks are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:0\n"
               "The tasks have crashed.")
    with pytest.raises(distribute.ClusterError) as err:
        with distribute.explain_cluster_errors(str(checkpoints)):
            raise tf.errors.UnavailableError(None, None, aborted)
    message = str(err.value)
    assert message.startswith("worker 1 lost the other workers (UnavailableError:")
    assert "unhealthy" in message and "/job:worker/replica:0/task:0" in message
    assert "at most 30 s" in message and str(checkpoints / "ckpt-12") in message
    with pytest.raises(distribute.ClusterError, match="resume from the start"):
        with distribute.explain_cluster_errors(str(tmp_path / "none")):
            raise tf.errors.DeadlineExceededError(None, None, "Collective ops timed out")
