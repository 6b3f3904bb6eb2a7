"""Real faces, really translated (slow): the utkface_age_cpu preset, trained briefly on the UTKFace
sample, then judged on the held-out split by the project's own age oracle (tests/eval/conftest.py).

Measured for these 300 steps (`python -m benchmarks.quality --task=age --seeds=0,1 --arm=brief
--flags=schedule=48:1,64:1,steps_per_epoch=150`; docs/quality.md, "The test"): judged target
20s -> 50s 0.33 / 0.26 (untranslated 0.17), 50s -> 20s 0.53 / 0.79 (untranslated 0.11); cycle L1
0.24-0.28; artefact ratio 0.02-0.07 (a blurry start, no checkerboard).

A generator that only scrambles its input also "flips" the oracle: after three training steps,
35 % of the 20s and 76 % of the 50s are judged the other age, but with cycle L1 0.55-0.60. So the
test asks for both at once: the target-domain share beats the untranslated faces' by FLIP_MARGIN
in each direction (about half the smaller measured gain), while the faces survive the round trip (cycle L1 at most CYCLE_L1_MAX) and
carry no checkerboard.
"""

import pytest

from tfcyclegan import config as C

BRIEF = {"schedule": "48:1,64:1", "steps_per_epoch": 150}  # 300 steps, about 2 minutes
FLIP_MARGIN = {"a2b": 0.04, "b2a": 0.20}
CYCLE_L1_MAX = 0.30
ARTEFACT_RATIO_MAX = 1.10


@pytest.mark.slow
def test_brief_cpu_preset_changes_the_age_oracles_verdict_and_keeps_the_faces(tmp_path, utkface_sample, age_oracle):
    from tfcyclegan.eval.evaluate import evaluate_workdir
    from tfcyclegan.train.trainer import Trainer

    cfg = C.replace(C.TrainConfig(), {**C.PRESETS["utkface_age_cpu"], "data.data_dir": str(utkface_sample),
                                      "keep_checkpoints": 1, **BRIEF})
    workdir = str(tmp_path / "run")
    assert Trainer(cfg, workdir, data_cache_dir=str(tmp_path / "cache"), quiet=True).run().finished
    report = evaluate_workdir(workdir, str(tmp_path / "eval"), data_dir=str(utkface_sample), inception_weights="none",
                              oracle_dir=age_oracle["path"], progress=False)
    for name, direction in report["directions"].items():
        flip = direction["flip_rate"]
        figures = (f"{name}: {flip['translated']:.2f} judged target (untranslated {flip['untranslated']:.2f}, real "
                   f"target {flip['oracle_on_real_target']:.2f}), cycle L1 {direction['cycle_l1']:.3f}, artefact "
                   f"ratio {direction['artefacts']['artefact_ratio']:.2f}")
        print(figures)
        assert flip["translated"] - flip["untranslated"] >= FLIP_MARGIN[name], figures
        assert direction["cycle_l1"] <= CYCLE_L1_MAX, figures
        assert direction["artefacts"]["artefact_ratio"] <= ARTEFACT_RATIO_MAX, figures
