"""It learns, not only runs: the README's demo (--preset=demo) on the synthetic age task.

The synthetic 50s have grey hair and the 20s dark hair, so translation A -> B must brighten the
hair region and B -> A darken it. "Moved" is the translated hair brightness's way from the
source domain's mean to the target's (1.0: all the way). The demo preset (1,200 steps at 32 px,
batch 4, filters 32, three residual blocks, lr 5e-4; docs/quality.md, "The demo") measured
0.89 (A -> B) and 0.87 (B -> A) with held-out cycle L1 0.20 (from about 0.47 untrained). The
thresholds (half way; cycle L1 below 0.28) leave room for run-to-run noise.

A smaller run (200 steps, filters 16, two blocks) in mixed_bfloat16 (what --precision=auto picks
on a CPU where bfloat16 is faster) must end within BF16_CYCLE_L1_TOLERANCE of the same run in
float32 (measured 0.331 vs 0.336; hair moved 0.83 vs 0.85).
"""

import numpy as np
import pytest

from tfcyclegan import config as C
from tfcyclegan import data
from tfcyclegan.train import trainer as trainer_lib

from conftest import tiny_config

DEMO_CYCLE_L1_THRESHOLD = 0.28
SMALL_CYCLE_L1_THRESHOLD = 0.40
BF16_CYCLE_L1_TOLERANCE = 0.05


def _hair_brightness(images, examples, masks):
    return float(np.mean([img[masks[ex.name]].mean() for img, ex in zip(images, examples)]))


def _learn(workdir, synthetic_cache, cfg):
    trainer = trainer_lib.Trainer(cfg, str(workdir), data_cache_dir=synthetic_cache, quiet=True)
    domains, size = trainer.domains, cfg.schedule.stages[-1].size
    masks = data.hair_masks(domains.stats["source"]["path"], size)
    real_a = data.load_eval_images(domains, cfg.data, domain="a", split="test", size=size)
    real_b = data.load_eval_images(domains, cfg.data, domain="b", split="test", size=size)
    hair_a = _hair_brightness(real_a, domains.a.test, masks)
    hair_b = _hair_brightness(real_b, domains.b.test, masks)
    assert hair_b - hair_a > 0.5  # the attribute is there to be learned

    initial_cycle = np.abs(trainer.model.gen_f(trainer.model.gen_g(real_a)).numpy() - real_a).mean()
    assert trainer.run().finished

    fake_b = trainer.model.gen_g(real_a, training=False).numpy()
    fake_a = trainer.model.gen_f(real_b, training=False).numpy()
    cycled_a = trainer.model.gen_f(fake_b, training=False).numpy()
    return dict(
        moved_a2b=(_hair_brightness(fake_b, domains.a.test, masks) - hair_a) / (hair_b - hair_a),
        moved_b2a=(_hair_brightness(fake_a, domains.b.test, masks) - hair_b) / (hair_a - hair_b),
        cycle_l1=float(np.abs(cycled_a - real_a).mean()), initial_cycle=initial_cycle,
        samples=sorted((workdir / "samples").glob("*.png")),
    )


def _demo_config():
    """The README's first command: the demo preset as given, precision auto and all."""
    cfg = C.replace(C.TrainConfig(), C.PRESETS["demo"])
    return C.replace(cfg, {"log_every_steps": 100})


def _small_config(precision):
    return C.replace(tiny_config(
        model=C.ModelConfig(gen_filters=16, gen_blocks=2, disc_filters=16, upsample="bilinear"),
        data=C.DataConfig(task="age"), schedule="32:5", steps_per_epoch=40, batch_size=4, pool_size=50,
        steps_per_call=10, log_every_steps=40), {"precision": precision})


def test_demo_preset_moves_hair_both_ways_and_keeps_the_faces(tmp_path, synthetic_cache):
    result = _learn(tmp_path, synthetic_cache, _demo_config())
    for direction in ("a2b", "b2a"):
        moved = result[f"moved_{direction}"]
        assert moved >= 0.5, f"{direction}: hair brightness moved only {moved:.2f} of the way"
    assert result["cycle_l1"] < DEMO_CYCLE_L1_THRESHOLD, f"cycle L1 {result['cycle_l1']:.3f} (initial {result['initial_cycle']:.3f})"
    assert result["samples"][-1].name == "epoch_0030_32px.png"  # the picture the README shows


@pytest.fixture(scope="module")
def small(tmp_path_factory, synthetic_cache):
    results = {}

    def get(precision):
        if precision not in results:
            results[precision] = _learn(tmp_path_factory.mktemp(precision), synthetic_cache, _small_config(precision))
        return results[precision]

    return get


@pytest.mark.slow
def test_bfloat16_run_matches_float32_on_cycle_l1(small):
    float32, bfloat16 = small("float32"), small("mixed_bfloat16")
    for result in (float32, bfloat16):
        assert result["moved_a2b"] >= 0.5 and result["cycle_l1"] < SMALL_CYCLE_L1_THRESHOLD
    assert abs(bfloat16["cycle_l1"] - float32["cycle_l1"]) < BF16_CYCLE_L1_TOLERANCE, (
        f"cycle L1: bfloat16 {bfloat16['cycle_l1']:.3f}, float32 {float32['cycle_l1']:.3f}")
