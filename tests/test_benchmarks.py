"""The benchmarks' own arithmetic: what they time must be what the trainer runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from step_time import chunk_steps  # noqa: E402


@pytest.mark.parametrize("steps, per_call, expected", [
    (3, 4, 4),  # 48 px: one full 4-step call, not a 3-step call
    (3, 2, 4),  # 64 px: two 2-step calls, not 2 + 1
    (3, 1, 3),
    (4, 4, 4),
    (5, 4, 8),
    (1, 1, 1),
])
def test_chunks_are_whole_calls(steps, per_call, expected):
    chunk = chunk_steps(steps, per_call)
    assert chunk == expected
    assert chunk % per_call == 0 and chunk >= steps


@pytest.mark.parametrize("steps, per_call", [(0, 4), (3, 0), (-1, 1)])
def test_chunk_steps_refuses_nonpositive(steps, per_call):
    with pytest.raises(ValueError, match="at least 1"):
        chunk_steps(steps, per_call)
