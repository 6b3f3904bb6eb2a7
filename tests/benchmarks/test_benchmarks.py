"""The benchmarks' own arithmetic: what they time must be what the trainer runs."""

from __future__ import annotations

import pytest

from benchmarks.common import chunk_steps


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


# oneDNN verbose lines in the format TensorFlow 2.21's oneDNN prints on this project's CI machine (a 48 px
# step's primitives); the times are round numbers chosen for the checks.
ONEDNN_LOG = """\
onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:bf16::blocked:cdba::f0 dst:bf16::blocked:AcdB64a2b::f0,,,256x256x3x3,0.125
onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core_bf16,forward_training,src:bf16::blocked:acdb::f0 wei:bf16:a:blocked:AcdB64a2b::f0 bia:undef::undef::: dst:bf16::blocked:acdb::f0,attr-scratchpad:user,alg:convolution_direct,mb2_ic256oc256_ih14oh12kh3sh1dh0ph0_iw14ow12kw3sw1dw0pw0,1.5
onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:bf16::blocked:cdba::f0 dst:bf16::blocked:BcdA64b2a::f0,,,256x256x3x3,0.25
onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_bwd:avx512_core_bf16+brg_conv_fwd:avx512_core_bf16,backward_data,src:bf16::blocked:acdb::f0 wei:bf16:a:blocked:BcdA64b2a::f0 bia:undef::undef::: dst:bf16::blocked:acdb::f0,,alg:convolution_direct,mb2_ic256oc256_ih14oh12kh3sh1dh0ph0_iw14ow12kw3sw1dw0pw0,1.75
onednn_verbose,v1,primitive,create:cache_hit,cpu,convolution,jit_bf16:avx512_core_bf16,backward_weights,src:bf16::blocked:acdb::f0 wei:bf16:ap:blocked:ABcd16b16a::f0 bia:undef::undef::: dst:bf16::blocked:acdb::f0,,alg:convolution_direct,mb2_ic512oc1_ih7oh4kh4sh1dh0ph0_iw7ow4kw4sw1dw0pw0,0.5
onednn_verbose,v1,primitive,exec,cpu,convolution,jit_bf16:avx512_core_bf16,backward_weights,src:bf16::blocked:acdb::f0 wei:bf16:ap:blocked:ABcd16b16a::f0 bia:undef::undef::: dst:bf16::blocked:acdb::f0,,alg:convolution_direct,mb2_ic512oc1_ih7oh4kh4sh1dh0ph0_iw7ow4kw4sw1dw0pw0,0.375
onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:bf16:p:blocked:ABcd16b16a::f0 dst:bf16::blocked:cdba::f0,,,1x512x4x4,0.0625
onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_bf16,undef,src:bf16::blocked:ba::f0 wei:bf16::blocked:ab::f0 dst:bf16::blocked:ab::f0,attr-scratchpad:user,,4096x50:50x512,1.0
onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:bf16::blocked:abcd::f0 dst:bf16::blocked:bcad::f0,,,2x48x48x64,0.5
onednn_verbose,v1,primitive,exec,cpu,batch_normalization,bnorm_tbb_jit:avx512_core_bf16,forward_training,data:bf16::blocked:acdb::f0,,flags:CH,mb1ic128ih2304iw1,0.25
2026-12-01 15:04:21.000000: I tensorflow/core/some_file.cc:1] a line that is not oneDNN's
"""


def test_onednn_log_is_split_by_kind_per_step():
    from benchmarks.step_profile import onednn_times

    times = onednn_times(ONEDNN_LOG.splitlines(), steps=2)
    # Per step (2 steps): the creation line and the non-oneDNN line are not counted.
    assert times["conv_forward"] == {"ms": 0.75, "count": 0.5}
    assert times["conv_backward_data"] == {"ms": 0.88, "count": 0.5}  # 0.875 rounded
    assert times["conv_backward_weights"] == {"ms": 0.19, "count": 0.5}
    assert times["matmul"] == {"ms": 0.5, "count": 0.5}
    # To and from TensorFlow's HWIO filter layout (cdba): weights; the activation transpose is not.
    assert times["reorder_weights"] == {"ms": 0.22, "count": 1.5}
    assert times["reorder_other"] == {"ms": 0.25, "count": 0.5}
    assert times["batch_norm"] == {"ms": 0.12, "count": 0.5}
    assert times["other"] == {"ms": 0.0, "count": 0.0}


def test_onednn_log_section_is_found_by_its_markers_and_must_hold_onednn_lines():
    from benchmarks.step_profile import BEGIN, END, log_section

    exec_line = ONEDNN_LOG.splitlines()[0]
    text = "\n".join(["noise", BEGIN.format(size=48), exec_line, "b", END.format(size=48), BEGIN.format(size=256),
                      exec_line, END.format(size=256), BEGIN.format(size=64), "no oneDNN here", END.format(size=64)])
    assert log_section(text, 48) == [exec_line, "b"]
    assert log_section(text, 256) == [exec_line]
    with pytest.raises(SystemExit, match="no section for 96 px"):
        log_section(text, 96)
    # oneDNN off (or its log never started): the markers are there, its lines are not.
    with pytest.raises(SystemExit, match="oneDNN logged nothing at 64 px"):
        log_section(text, 64)


def _run_row(size, wall, cpu):
    return {"size": size, "precision": "mixed_bfloat16", "threads_per_op": 1, "steps": 8, "steps_per_call": 1,
            "wall_s_per_step": wall, "cpu_ms_per_step": cpu, "system_cpu_ms_per_step": 1.0,
            "minor_page_faults_per_step": 60.0}


def _exec_line(kind_fields, ms):
    return f"onednn_verbose,v1,primitive,exec,cpu,{kind_fields},{ms}"


def test_profile_rows_and_excess_over_256_px():
    from benchmarks.step_profile import BEGIN, END, add_excess_over_256, summarize

    conv_fwd = "convolution,brg_conv_fwd:avx512_core_bf16,forward_training,src:bf16::blocked:acdb::f0,,alg,mb1"
    weights = "reorder,jit:uni,undef,src:bf16::blocked:cdba::f0 dst:bf16::blocked:AcdB64a2b::f0,,,256x256x3x3"
    # 8 steps per size: per step, 48 px has 104 ms of forward convolutions and 38 ms of weight
    # reorders; 256 px has 2968 and 44 (this project's 2-core machine, rounded).
    log = [BEGIN.format(size=48), *[_exec_line(conv_fwd, 104.0)] * 8, *[_exec_line(weights, 38.0)] * 8,
           END.format(size=48), BEGIN.format(size=256), *[_exec_line(conv_fwd, 2968.0)] * 8,
           *[_exec_line(weights, 44.0)] * 8, END.format(size=256)]
    plain = [{48: _run_row(48, 0.24, 490.0), 256: _run_row(256, 5.2, 10400.0)},
             {48: _run_row(48, 0.26, 498.0), 256: _run_row(256, 5.3, 10420.0)}]
    rows = summarize(plain, "\n".join(log), [48, 256])
    add_excess_over_256(rows)
    small, big = rows[48], rows[256]
    assert small["cpu_ms_per_step"] == 494.0 and small["cpu_ms_per_step_by_run"] == [490.0, 498.0]
    assert small["wall_s_per_step"] == 0.25
    assert small["onednn_ms_per_step"] == 142.0 and small["outside_onednn_ms"] == 352.0
    assert big["onednn_ms_per_step"] == 3012.0 and big["outside_onednn_ms"] == 7398.0
    scale = (48 / 256) ** 2
    excess = small["excess_ms_vs_256_pixel_scaled"]
    assert excess["cpu"] == round(494.0 - scale * 10410.0, 1) == 128.0
    assert excess["reorder_weights"] == round(38.0 - scale * 44.0, 1) == 36.5
    assert excess["conv_forward"] == round(104.0 - scale * 2968.0, 1) == -0.3
    assert excess["outside_onednn"] == round(352.0 - scale * 7398.0, 1)
    assert small["wall_overhead_vs_256_pixel_scaled"] == round(0.25 / (scale * 5.25), 3)
    assert "excess_ms_vs_256_pixel_scaled" not in big


def test_profile_runs_that_disagree_are_refused():
    from benchmarks.step_profile import summarize

    other = dict(_run_row(48, 0.25, 494.0), precision="float32")
    with pytest.raises(SystemExit, match="differ in their set-up"):
        summarize([{48: _run_row(48, 0.25, 494.0)}, {48: other}], "", [48])


def test_quality_arms_parse_to_train_flags():
    from benchmarks.quality import parse_arm

    assert parse_arm("base") == ("base", {})
    assert parse_arm("id0.1:lambda_identity=0.1,--gen_filters=32") == ("id0.1", {"lambda_identity": "0.1", "gen_filters": "32"})
    assert parse_arm("brief:schedule=48:1,64:1,steps_per_epoch=150") == (
        "brief", {"schedule": "48:1,64:1", "steps_per_epoch": "150"})
    with pytest.raises(SystemExit, match="flag=value"):
        parse_arm("bad:lambda_identity")
    with pytest.raises(SystemExit, match="name"):
        parse_arm(":lambda_identity=0.1")


def _quality_run(flip_a2b, cycle_a2b, flip_b2a=0.5, cycle_b2a=0.2, wall=100.0):
    def direction(flip, cycle):
        return {"flip": flip, "relative": flip / 0.8, "untranslated": 0.1, "ceiling": 0.8, "cycle_l1": cycle,
                "identity_l1": cycle, "artefact_ratio": 1.0, "sharpness_ratio": 0.5}

    return {"wall_s": wall, "cpu_s": 2 * wall,
            "result": {"directions": {"a2b": direction(flip_a2b, cycle_a2b), "b2a": direction(flip_b2a, cycle_b2a)}}}


def test_quality_summary_is_mean_min_max_over_seeds_and_skips_failed_runs():
    from benchmarks.quality import aims_met, summarise

    runs = [_quality_run(0.6, 0.20, wall=100.0), _quality_run(0.8, 0.10, wall=300.0), {"error": "train.py exited 1"}]
    summary = summarise(runs)
    assert summary["a2b"]["flip"] == {"mean": 0.7, "min": 0.6, "max": 0.8}
    assert summary["a2b"]["cycle_l1"] == {"mean": 0.15, "min": 0.1, "max": 0.2}
    assert summary["b2a"]["relative"] == {"mean": 0.625, "min": 0.625, "max": 0.625}
    assert summary["wall_s"] == 200.0 and summary["cpu_s"] == 400.0

    met = aims_met(_quality_run(0.75, 0.09)["result"]["directions"])  # 0.75 / 0.8 = 0.94 of the ceiling
    assert met["a2b"] == {"flip": True, "cycle_l1": True, "artefacts": True}
    assert met["b2a"] == {"flip": False, "cycle_l1": False, "artefacts": True}
