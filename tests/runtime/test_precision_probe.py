"""The --precision=auto probe: CPU flags, the timed residual block, the on-disk verdict."""

import json

import pytest

from tfcyclegan.model.networks import time_residual_block
from tfcyclegan.runtime import precision


@pytest.fixture
def fresh_probe(tmp_path, monkeypatch):
    monkeypatch.setenv("TFCYCLEGAN_CACHE_DIR", str(tmp_path))
    precision.bf16_speedup.cache_clear()
    yield tmp_path
    precision.bf16_speedup.cache_clear()


def test_bf16_instructions_are_read_from_the_cpu_flags():
    assert precision.has_bf16_instructions(frozenset({"avx2", "avx512f", "avx512_bf16"}))
    assert precision.has_bf16_instructions(frozenset({"amx_bf16"}))
    assert not precision.has_bf16_instructions(frozenset({"avx2", "avx512f", "avx512_vnni"}))


def test_no_bf16_instructions_means_float32_without_probing(monkeypatch, fresh_probe):
    monkeypatch.setattr(precision, "cpu_model_and_flags", lambda: ("Old CPU", frozenset({"avx2"})))
    assert precision.cpu_precision(lambda dtype: pytest.fail("probed")) == "float32"


@pytest.mark.parametrize("f32_time, bf16_time, expected", [(1.0, 0.5, "mixed_bfloat16"), (1.0, 0.95, "float32"),
                                                           (1.0, 1.6, "float32")])
def test_auto_picks_bfloat16_only_when_the_block_runs_faster(monkeypatch, fresh_probe, f32_time, bf16_time, expected):
    monkeypatch.setattr(precision, "cpu_model_and_flags", lambda: ("Some CPU", frozenset({"avx512_bf16"})))
    times = {"float32": f32_time, "mixed_bfloat16": bf16_time}
    assert precision.cpu_precision(lambda dtype: times[dtype]) == expected


def test_verdict_is_cached_on_disk_per_cpu(monkeypatch, fresh_probe):
    monkeypatch.setattr(precision, "cpu_model_and_flags", lambda: ("CPU X", frozenset({"avx512_bf16"})))
    calls = []
    time_block = lambda dtype: calls.append(dtype) or {"float32": 2.0}.get(dtype, 1.0)  # noqa: E731
    assert precision.bf16_speedup(time_block) == pytest.approx(2.0)
    assert calls == ["float32", "mixed_bfloat16"]
    cached = json.loads((fresh_probe / "precision_probe.json").read_text())
    assert [v for k, v in cached.items() if k.startswith("CPU X |")] == [2.0]
    precision.bf16_speedup.cache_clear()
    assert precision.bf16_speedup(time_block) == pytest.approx(2.0)  # from the file this time
    assert len(calls) == 2
    monkeypatch.setattr(precision, "cpu_model_and_flags", lambda: ("CPU Y", frozenset({"avx512_bf16"})))
    precision.bf16_speedup.cache_clear()
    precision.bf16_speedup(time_block)
    assert len(calls) == 4  # another CPU model probes again


def test_residual_block_probe_really_runs_both_policies():
    for dtype in ("float32", "mixed_bfloat16"):
        seconds = time_residual_block(dtype, size=8, channels=8, repeats=2)
        assert 0 < seconds < 30


def test_precision_auto_on_a_cpu_follows_the_probe(monkeypatch):
    monkeypatch.setattr(precision, "has_gpu", lambda: False)
    for verdict in ("mixed_bfloat16", "float32"):
        monkeypatch.setattr(precision, "cpu_precision", lambda time_block, verdict=verdict: verdict)
        assert precision.resolve_precision("auto", time_residual_block) == verdict
        assert precision.resolve_precision("float32", time_residual_block) == "float32"
    monkeypatch.setattr(precision, "has_gpu", lambda: True)
    assert precision.resolve_precision("auto", time_residual_block) == "mixed_float16"


def test_the_log_line_names_the_cpu_and_the_probe_verdict(monkeypatch, fresh_probe):
    monkeypatch.setattr(precision, "has_gpu", lambda: False)
    monkeypatch.setattr(precision, "cpu_model_and_flags", lambda: ("CPU Z", frozenset({"avx512_bf16"})))
    time_block = lambda dtype: {"float32": 1.0}.get(dtype, 1.6)  # noqa: E731
    assert precision.describe_device(time_block) == "CPU Z: a residual block runs 0.62x as fast in bfloat16"
    monkeypatch.setattr(precision, "cpu_model_and_flags", lambda: ("Old CPU", frozenset({"avx2"})))
    assert precision.describe_device(time_block) == "Old CPU, no bfloat16 instructions"
