"""cheap_metrics, the full evaluation and its report, and the documented errors."""

import html.parser
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfcyclegan import pictures
from tfcyclegan.eval import evaluate, metrics, report
from tfcyclegan.io import to_uint8
from tfcyclegan.eval import oracle as oracle_lib
from tfcyclegan.model.workdir import CheckpointError
from tfcyclegan.config import DataConfig, ModelConfig, Schedule, TrainConfig
from tfcyclegan.model.networks import build_generator

TINY = ModelConfig(gen_filters=8, gen_blocks=1, disc_filters=8)


class _BrightnessOracle:
    """Calls an image B when its mean is above zero."""

    def predict_b(self, images):
        return (np.asarray(images).mean(axis=(1, 2, 3)) > 0).astype(np.float64)


def _constant_images(values, size=8):
    return np.stack([np.full((size, size, 3), v, np.float32) for v in values])


# -- cheap_metrics -------------------------------------------------------------------------------


def test_cheap_metrics_cycle_and_identity_on_known_generators():
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (5, 8, 8, 3)).astype(np.float32)
    b = rng.uniform(-1, 1, (7, 8, 8, 3)).astype(np.float32)
    gen_g = lambda x: 0.5 * x  # A -> B
    gen_f = lambda x: 2.0 * x  # B -> A: exactly undoes gen_g, so both cycles are perfect
    out = evaluate.cheap_metrics(gen_g, gen_f, a, b, batch_size=3)
    assert set(out) == {"cycle_l1_a2b", "cycle_l1_b2a", "identity_l1_a2b", "identity_l1_b2a"}
    assert out["cycle_l1_a2b"] == pytest.approx(0.0, abs=1e-7)
    assert out["cycle_l1_b2a"] == pytest.approx(0.0, abs=1e-7)
    assert out["identity_l1_a2b"] == pytest.approx(np.abs(0.5 * b - b).mean(), rel=1e-6)  # G on real B
    assert out["identity_l1_b2a"] == pytest.approx(np.abs(2.0 * a - a).mean(), rel=1e-6)  # F on real A
    # The batch size does not change the (pixel-weighted) means.
    assert evaluate.cheap_metrics(gen_g, gen_f, a, b, batch_size=8) == pytest.approx(out)


def test_cheap_metrics_flip_rate_with_known_answers():
    a = _constant_images([-0.5] * 7 + [0.5] * 3)  # the oracle calls 3 of 10 real A images B
    b = _constant_images([0.5] * 6 + [-0.5] * 2)  # and 2 of 8 real B images A
    negate = lambda x: -x
    out = evaluate.cheap_metrics(negate, negate, a, b, oracle=_BrightnessOracle(), batch_size=4)
    assert out["flip_rate_a2b"] == pytest.approx(0.7)
    assert out["flip_rate_b2a"] == pytest.approx(0.75)
    keep = lambda x: x
    out = evaluate.cheap_metrics(keep, keep, a, b, oracle=_BrightnessOracle())
    assert out["flip_rate_a2b"] == pytest.approx(0.3)
    assert out["flip_rate_b2a"] == pytest.approx(0.25)
    assert out["cycle_l1_a2b"] == out["identity_l1_a2b"] == 0.0


def test_cheap_metrics_with_keras_generators():
    gen_g, gen_f = build_generator(TINY, name="gen_g"), build_generator(TINY, name="gen_f")
    rng = np.random.default_rng(1)
    a, b = (rng.uniform(-1, 1, (3, 16, 16, 3)).astype(np.float32) for _ in range(2))
    out = evaluate.cheap_metrics(gen_g, gen_f, a, b, oracle=_BrightnessOracle(), batch_size=2)
    assert len(out) == 6
    for key, value in out.items():
        assert isinstance(value, float) and np.isfinite(value), key
    expected = np.abs(np.asarray(gen_f(gen_g(a))) - a).mean()
    assert out["cycle_l1_a2b"] == pytest.approx(expected, rel=1e-5)


def test_flip_rates_beside_the_ceiling_and_per_group_with_known_answers():
    a = _constant_images([-0.5] * 6 + [0.5] * 2)  # the oracle calls 2 of 8 real A images B
    b = _constant_images([0.5] * 3 + [-0.5])  # and 3 of 4 real B images B: a2b's ceiling is 0.75
    labels = {"a": {"race": np.array([0, 0, 0, 0, 1, 1, 1, 1]), "gender": np.zeros(8, int)},
              "b": {"race": np.array([0, 1, 1, 1])}}  # no gender for B: no per-gender table
    negate = lambda x: -x
    directions, _, warnings = evaluate.evaluate_arrays(
        negate, negate, a, b, features=None, oracle=_BrightnessOracle(), labels=labels, batch_size=3, panel_count=2)
    flip = directions["a2b"]["flip_rate"]
    assert (flip["translated"], flip["untranslated"], flip["oracle_on_real_target"]) == pytest.approx((0.75, 0.25, 0.75))
    assert flip["relative"] == pytest.approx(1.0)
    assert flip["by_race"] == {
        "white": {"count": 4, "translated": 1.0, "untranslated": 0.0, "target_count": 1, "oracle_on_real_target": 1.0},
        "black": {"count": 4, "translated": 0.5, "untranslated": 0.5, "target_count": 3,
                  "oracle_on_real_target": pytest.approx(2 / 3)},
    }
    assert "by_gender" not in flip
    back = directions["b2a"]["flip_rate"]  # B -> A: 3 of 4 negated B images are called A; real A: 6 of 8
    assert (back["translated"], back["oracle_on_real_target"], back["relative"]) == pytest.approx((0.75, 0.75, 1.0))
    assert directions["a2b"]["fid"] is None and directions["a2b"]["kid"] is None and not warnings
    assert set(directions["a2b"]["artefacts"]) >= {"artefact_ratio", "sharpness_ratio", "fixed_pattern_ratio"}


# -- a small workdir ------------------------------------------------------------------------------


def _make_workdir(root: Path, *, step=7, scalars=True) -> Path:
    workdir = root / "run"
    workdir.mkdir()
    # 120 synthetic faces (the size conftest's other tests generate too): 5 + 7 test images at 32 px.
    config = TrainConfig(model=TINY, data=DataConfig(synthetic_count=120), schedule=Schedule.parse("32:1"))
    (workdir / "config.json").write_text(config.to_json())
    gen_g, gen_f = build_generator(TINY, name="gen_g"), build_generator(TINY, name="gen_f")
    progress = tf.train.Checkpoint(global_step=tf.Variable(step, dtype=tf.int64))
    ckpt = tf.train.Checkpoint(gen_g=gen_g, gen_f=gen_f, progress=progress)
    tf.train.CheckpointManager(ckpt, str(workdir / "checkpoints"), max_to_keep=3).save()
    if scalars:
        writer = tf.summary.create_file_writer(str(workdir / "logs"))
        with writer.as_default():
            for s in range(0, 50, 5):
                tf.summary.scalar("loss/gen_g_total", 2.0 / (1 + s), step=s)
                tf.summary.scalar("loss/cycle_a", 1.0 - s / 100, step=s)
                tf.summary.scalar("learning_rate", 2e-4, step=s)
        writer.close()
    return workdir


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return _make_workdir(tmp_path_factory.mktemp("eval"))


@pytest.fixture(scope="module")
def oracle_dir(tmp_path_factory):
    """An untrained oracle saved in the real format, with made-up metadata (accuracy 0.6)."""
    import keras

    keras.utils.set_random_seed(0)
    meta = {
        "format": oracle_lib.FORMAT, "version": oracle_lib.VERSION, "size": 32, "threshold": 0.5,
        "data": {"dataset": "synthetic", "task": "gender"}, "test_accuracy": 0.6, "test_accuracy_a": 0.6,
        "test_accuracy_b": 0.6, "balanced_test_accuracy": 0.6, "counts": {},
    }
    directory = str(tmp_path_factory.mktemp("oracle"))
    oracle_lib.Oracle(oracle_lib.build_oracle_model(filters=4), meta).save(directory)
    return directory


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        for key in ("src", "href"):
            if attrs.get(key):
                self.sources.append(attrs[key])


REPO = Path(__file__).resolve().parents[2]


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "tfcyclegan.cli.evaluate", *args], capture_output=True, text=True, cwd=REPO, timeout=600,
    )


@pytest.fixture(scope="module")
def evaluated(workdir, oracle_dir, synthetic_cache, tmp_path_factory):
    """The command line, end to end: workdir + synthetic test split (4 per domain) -> report."""
    output = tmp_path_factory.mktemp("report")
    run = _cli(
        f"--workdir={workdir}", f"--output={output}", f"--cache_dir={synthetic_cache}", "--inception_weights=random",
        f"--oracle={oracle_dir}", "--count=4", "--panel_count=3", "--batch_size=4",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads((output / "report.json").read_text()), output, run.stdout


def test_without_inception_every_other_figure_is_there(workdir, oracle_dir, synthetic_cache, tmp_path):
    output = tmp_path / "report"
    run = _cli(f"--workdir={workdir}", f"--output={output}", f"--cache_dir={synthetic_cache}", "--inception_weights=none",
               f"--oracle={oracle_dir}", "--count=4", "--panel_count=2", "--batch_size=4")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "FID" not in run.stdout and "artefact ratio" in run.stdout and "real target" in run.stdout
    on_disk = json.loads((output / "report.json").read_text())
    assert on_disk["feature_extractor"] is None
    for d in on_disk["directions"].values():
        assert d["fid"] is None and d["flip_rate"]["translated"] is not None and d["artefacts"]["artefact_ratio"] > 0
        assert "by_race" in d["flip_rate"]  # the synthetic faces carry UTKFace labels
    html_text = (output / "index.html").read_text(encoding="utf-8")
    assert "FID \u2193" not in html_text and "No FID or KID" in html_text
    assert "artefact ratio" in html_text and "flip rate by race" in html_text and "spectra.png" in html_text


def test_command_line_prints_a_summary(evaluated):
    _, output, stdout = evaluated
    assert f"Report: {output / 'index.html'} (step 7)" in stdout
    assert "a2b: FID" in stdout and "flip" in stdout and "warning: Inception weights are RANDOM" in stdout


def test_report_files_exist_and_html_references_resolve(evaluated):
    _, output, _ = evaluated
    for name in ("report.json", "index.html", "panel_a2b.png", "panel_b2a.png", "loss_curves.png", "spectra.png"):
        assert (output / name).is_file(), name
    parser = _Links()
    parser.feed((output / "index.html").read_text(encoding="utf-8"))
    parser.close()
    assert parser.tags[:2] == ["html", "head"] and "table" in parser.tags
    assert {"panel_a2b.png", "panel_b2a.png", "loss_curves.png", "spectra.png", "report.json"} <= set(parser.sources)
    for reference in parser.sources:
        assert (output / reference).is_file(), reference
    for name in ("panel_a2b.png", "panel_b2a.png", "loss_curves.png", "spectra.png"):
        with Image.open(output / name) as image:
            image.verify()


def test_report_json_has_every_figure(evaluated):
    on_disk, output, _ = evaluated
    assert on_disk["checkpoint"]["global_step"] == 7
    assert on_disk["config"]["model"]["gen_filters"] == 8
    assert {"python", "tensorflow", "keras", "numpy", "scipy"} <= set(on_disk["software"])
    assert on_disk["feature_extractor"]["random_weights"] is True
    assert any("RANDOM" in w for w in on_disk["warnings"])
    assert any("below the minimum of 2048" in w for w in on_disk["warnings"])
    assert any("test accuracy is 60.0 %" in w for w in on_disk["warnings"])  # untrustworthy oracle
    assert any("oracle was trained on other domains" in w for w in on_disk["warnings"])  # gender vs age
    assert on_disk["data"]["dataset"] == "synthetic" and on_disk["data"]["split"] == "test"
    assert (on_disk["data"]["size"], on_disk["data"]["count_a"], on_disk["data"]["count_b"]) == (32, 4, 4)
    assert on_disk["data"]["stats"]["domains"]["a"]["test"] == 5
    for name, source_count in (("a2b", 4), ("b2a", 4)):
        d = on_disk["directions"][name]
        assert d["source_count"] == source_count
        for key in ("fid", "kid"):
            assert set(d[key]) == {"translated", "untranslated"}
        assert {"translated", "untranslated", "oracle_on_real_target", "relative"} <= set(d["flip_rate"])
        assert 0 <= d["flip_rate"]["oracle_on_real_target"] <= 1
        assert d["artefacts"]["artefact_ratio"] > 0 and d["artefacts"]["sharpness_ratio"] > 0
        assert d["fid"]["translated"] > 0 and d["fid"]["untranslated"] > 0
        assert 0 <= d["flip_rate"]["translated"] <= 1
        assert 0 < d["cycle_l1"] < 2 and 0 < d["identity_l1"] < 2
    # The untranslated baseline is the same real A vs real B comparison for both directions.
    assert on_disk["directions"]["a2b"]["fid"]["untranslated"] == on_disk["directions"]["b2a"]["fid"]["untranslated"]
    assert on_disk["directions"]["a2b"]["kid"]["translated"]["subsets"] == 1
    assert on_disk["files"]["index"] == "index.html" and on_disk["panel"] == {"count": 3, "seed": 0}
    html_text = (output / "index.html").read_text(encoding="utf-8")
    assert "TESTING ONLY" in html_text


def test_report_metrics_match_cheap_metrics(evaluated, workdir, synthetic_cache):
    # Same generators and images: the report's L1 figures are cheap_metrics' figures.
    from tfcyclegan.model.workdir import restore_generators

    result, _, _ = evaluated
    restored = restore_generators(str(workdir))
    loaded, _, _ = evaluate.load_splits(restored.config.data, splits=("test",), size=32, count=4, cache_dir=synthetic_cache)
    images_a, images_b = loaded["test"]
    cheap = evaluate.cheap_metrics(restored.gen_g, restored.gen_f, images_a, images_b, batch_size=4)
    for name in ("a2b", "b2a"):
        assert result["directions"][name]["cycle_l1"] == pytest.approx(cheap[f"cycle_l1_{name}"], rel=1e-6)
        assert result["directions"][name]["identity_l1"] == pytest.approx(cheap[f"identity_l1_{name}"], rel=1e-6)


def test_panel_has_one_triplet_per_selected_image():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (7, 16, 16, 3)).astype(np.float32)
    panel = pictures.triplet_panel(images, images, images, columns=3, gap=4)
    # 16 px images shown as 64 px tiles; 3 triplets per row (3 tiles + 2 gaps of 2, then 8 between
    # triplets), 3 rows under a 14 px header.
    assert panel.shape == (14 + 3 * 64 + 2 * 4, 3 * (3 * 64 + 4) + 2 * 8, 3)
    assert panel.dtype == np.uint8
    np.testing.assert_array_equal(panel[14:78:4, :64:4], to_uint8(images[0]))  # nearest: pixels kept
    big = np.repeat(np.repeat(images[:2], 16, axis=1), 16, axis=2)  # 256 px -> 128 px tiles
    assert pictures.triplet_panel(big, big, big).shape == (14 + 128, 2 * (3 * 128 + 4) + 8, 3)
    idx = evaluate.panel_indices(100, 60, seed=0)
    assert len(idx) == 60 and len(set(idx)) == 60 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, evaluate.panel_indices(100, 60, seed=0))
    assert len(evaluate.panel_indices(5, 60, seed=0)) == 5


def test_read_scalars_from_tensorboard_logs(workdir, tmp_path):
    scalars = report.read_scalars(str(workdir / "logs"))
    assert set(scalars) == {"loss/gen_g_total", "loss/cycle_a", "learning_rate"}
    assert scalars["loss/gen_g_total"][:2] == [(0, pytest.approx(2.0)), (5, pytest.approx(2.0 / 6))]
    assert report.read_scalars(str(tmp_path / "none")) == {}
    assert pictures.plot_curves({}, str(tmp_path / "x.png")) is False


# -- errors ----------------------------------------------------------------------------------------


def test_missing_workdir_names_the_path(tmp_path):
    with pytest.raises(evaluate.EvaluationError, match="no_such_run"):
        evaluate.evaluate_workdir(str(tmp_path / "no_such_run"), str(tmp_path / "out"), inception_weights="random")


def test_workdir_without_checkpoint_names_the_path(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        evaluate.evaluate_workdir(str(run), str(tmp_path / "out"), inception_weights="random")
    (run / "config.json").write_text(TrainConfig(model=TINY).to_json())
    with pytest.raises(CheckpointError, match=str(run / "checkpoints")):
        evaluate.evaluate_workdir(str(run), str(tmp_path / "out"), inception_weights="random")


def test_missing_oracle_names_the_path(workdir, tmp_path):
    with pytest.raises(oracle_lib.OracleError, match="no_oracle"):
        evaluate.evaluate_workdir(str(workdir), str(tmp_path / "out"), oracle_dir=str(tmp_path / "no_oracle"), inception_weights="random")


def test_missing_data_dir_names_the_path(workdir, tmp_path):
    with pytest.raises(evaluate.EvaluationError, match="no_data"):
        evaluate.evaluate_workdir(str(workdir), str(tmp_path / "out"), data_dir=str(tmp_path / "no_data"), inception_weights="random")


def test_missing_inception_weights_fail_before_any_work(workdir, tmp_path, monkeypatch):
    cached = tmp_path / "keras" / "models" / metrics.INCEPTION_WEIGHTS_FILE
    monkeypatch.setattr(metrics, "inception_cache_paths", lambda: [str(cached)])
    with pytest.raises(metrics.MetricsError, match="--inception_weights"):
        evaluate.evaluate_workdir(str(workdir), str(tmp_path / "out"), images=(None, None))
    assert not (tmp_path / "out").exists()


def test_too_few_images_is_an_error(workdir, tmp_path):
    one = np.zeros((1, 16, 16, 3), np.float32)
    with pytest.raises(evaluate.EvaluationError, match="at least 2"):
        evaluate.evaluate_arrays(lambda x: x, lambda x: x, one, np.zeros((3, 16, 16, 3), np.float32), features=lambda x: x.reshape(len(x), -1))


def test_command_line_errors_are_one_clear_line(tmp_path):
    missing = tmp_path / "nowhere"
    run = _cli(f"--workdir={missing}", f"--output={tmp_path / 'out'}", "--inception_weights=random")
    assert run.returncode == 1
    assert f"error: Workdir {str(missing)!r} does not exist." in run.stderr
    assert "Traceback" not in run.stderr


def test_size_not_divisible_by_4_is_refused(workdir, tmp_path):
    with pytest.raises(evaluate.EvaluationError, match="multiple of 4"):
        evaluate.evaluate_workdir(str(workdir), str(tmp_path / "out"), size=30, inception_weights="random")
