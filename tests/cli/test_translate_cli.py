"""tfcyclegan-translate (python -m tfcyclegan.cli.translate): files, folders with bad files, chains, panels, limits."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from PIL import Image

from tfcyclegan import export as export_lib
from tfcyclegan.io import to_uint8
from tfcyclegan.cli import translate
from tfcyclegan.translate import files as translate_files
from tfcyclegan import config as config_lib
from tfcyclegan.config import ModelConfig, TrainConfig
from tfcyclegan.model.networks import build_generator
from tfcyclegan.model.workdir import restore_generators

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ModelConfig(gen_filters=8, gen_blocks=1, disc_filters=8)


def _make_workdir(path, seed):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write(TrainConfig(model=TINY).to_json())
    keras.utils.set_random_seed(seed)
    ckpt = tf.train.Checkpoint(
        gen_g=build_generator(TINY, name="gen_g"), gen_f=build_generator(TINY, name="gen_f"),
        progress=tf.train.Checkpoint(global_step=tf.Variable(3, dtype=tf.int64)),
    )
    tf.train.CheckpointManager(ckpt, os.path.join(path, "checkpoints"), max_to_keep=3).save()
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two runs ("age" and "gender"), each exported as SavedModels and float32 TFLite files."""
    root = tmp_path_factory.mktemp("translate_models")
    out = {"exports": str(root / "exports")}
    for seed, name in enumerate(("age", "gender")):
        out[name] = _make_workdir(root / name, seed)
        export_lib.export(out[name], out["exports"], quantizations="float32", name=name, log=lambda _: None)
    return out


@pytest.fixture(scope="module")
def references(models):
    return {
        name: {"a2b": restored.gen_g, "b2a": restored.gen_f}
        for name, restored in ((n, restore_generators(models[n])) for n in ("age", "gender"))
    }


def _keras(generator, image_uint8):
    x = image_uint8.astype(np.float32)[None] / 127.5 - 1.0
    return export_lib.keras_reference(generator, x)[0]


def _to_uint8(x):
    return np.round((np.clip(x, -1, 1) + 1.0) * 127.5).astype(np.uint8)


def _photo(path, size=(45, 37), mode="RGB", seed=0):
    pixels = to_uint8(export_lib.synthetic_images(1, size[1], size[0], seed=seed))[0]
    Image.fromarray(pixels).convert(mode).save(path)
    return np.asarray(Image.open(path).convert("RGB"))


def _run(args):
    """main() in-process with a private flag set (no global absl state, no subprocess start-up).

    The models here were trained on synthetic faces, so --faces would default to on; the tests
    that translate whole synthetic images (no face in them) ask for --faces=off."""
    if not any(a.startswith("--faces=") for a in args):
        args = [*args, "--faces=off"]
    fv = translate.define_flags(flags.FlagValues())
    fv(["translate", *args])
    return translate.main(["translate"], fv)


def test_one_file_with_a_savedmodel_keeps_the_size(models, references, tmp_path):
    pixels = _photo(tmp_path / "me.jpg")
    code = _run([f"--model={models['exports']}/age_a2b/1", f"--input={tmp_path / 'me.jpg'}", f"--output={tmp_path / 'o' / 'me.png'}"])
    assert code == 0
    out = np.asarray(Image.open(tmp_path / "o" / "me.png"))
    assert out.shape == (37, 45, 3)
    expected = _to_uint8(_keras(references["age"]["a2b"], pixels))
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1


def test_folder_with_a_bad_file_reports_it_and_translates_the_rest(models, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    _photo(folder / "a.jpg", (40, 32))
    _photo(folder / "b.png", (29, 51), seed=1)
    _photo(folder / "grey.png", (33, 33), mode="L", seed=2)
    _photo(folder / "rgba.png", (24, 30), mode="RGBA", seed=3)
    (folder / "notes.txt").write_text("not a picture")
    (folder / ".DS_Store").write_bytes(b"\0")
    code = _run([f"--model={models['exports']}/gender_b2a.v1.float32.tflite", f"--input={folder}", f"--output={tmp_path / 'out'}"])
    captured = capsys.readouterr()
    assert code == 1
    assert f"error: {folder / 'notes.txt'}: not an image" in captured.err
    assert "translated 4 of 5 images" in captured.out and "1 failed: notes.txt" in captured.out
    written = sorted(os.listdir(tmp_path / "out"))
    assert written == ["a.png", "b.png", "grey.png", "rgba.png"]
    shapes = {n: np.asarray(Image.open(tmp_path / "out" / n)).shape for n in written}
    assert shapes == {"a.png": (32, 40, 3), "b.png": (51, 29, 3), "grey.png": (33, 33, 3), "rgba.png": (30, 24, 3)}


def test_two_model_chain_equals_the_composition_and_writes_a_panel(models, references, tmp_path):
    pixels = [_photo(tmp_path / f"p{i}.png", (36, 28), seed=i) for i in range(2)]
    code = _run([
        f"--model={models['age']}", "--direction=a2b", f"--chain={models['exports']}/gender_a2b.v1.float32.tflite",
        f"--input={tmp_path / 'p*.png'}", f"--output={tmp_path / 'out'}", f"--panel={tmp_path / 'panel.png'}",
    ])
    assert code == 0
    for i, image in enumerate(pixels):
        # The chain hands float32 images from step to step (no uint8 rounding in between).
        step1 = _keras(references["age"]["a2b"], image)
        step2 = _to_uint8(export_lib.keras_reference(references["gender"]["a2b"], step1[None])[0])
        out = np.asarray(Image.open(tmp_path / "out" / f"p{i}.png"))
        assert np.abs(out.astype(int) - step2.astype(int)).max() <= 1
    panel = Image.open(tmp_path / "panel.png")
    # Three columns (input, age, gender) of 256-pixel-high tiles, two rows, a header.
    assert panel.height == 16 + 2 * (256 + 4) and panel.width > 3 * 256


def test_workdir_direction_flag_and_suffix(models, references, tmp_path):
    pixels = _photo(tmp_path / "x.png", (32, 32))
    for args in (["--direction=b2a", f"--model={models['age']}"], [f"--model={models['age']}:b2a"]):
        assert _run([*args, f"--input={tmp_path / 'x.png'}", f"--output={tmp_path / 'y.png'}"]) == 0
        out = np.asarray(Image.open(tmp_path / "y.png"))
        assert np.abs(out.astype(int) - _to_uint8(_keras(references["age"]["b2a"], pixels)).astype(int)).max() <= 1


def test_direction_conflicting_with_an_export_is_refused(models, tmp_path, capsys):
    _photo(tmp_path / "x.png")
    code = _run([f"--model={models['exports']}/age_a2b", "--direction=b2a", f"--input={tmp_path / 'x.png'}", f"--output={tmp_path / 'y.png'}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "translates a2b (age 20-29 -> age 50-59), not b2a" in err and "age_b2a" in err


def test_max_side_and_size(models, tmp_path, capsys):
    _photo(tmp_path / "big.png", (300, 120))
    args = [f"--model={models['exports']}/age_a2b.v1.float32.tflite", f"--input={tmp_path / 'big.png'}"]
    assert _run([*args, f"--output={tmp_path / 'a.png'}", "--max_side=256"]) == 1
    assert "300x120 is larger than --max_side=256: pass --size=N" in capsys.readouterr().err
    assert _run([*args, f"--output={tmp_path / 'b.png'}", "--max_side=256", "--size=100"]) == 0
    assert Image.open(tmp_path / "b.png").size == (100, 40)
    assert _run([*args, f"--output={tmp_path / 'c.png'}", "--max_side=64", "--size=100"]) == 2


def test_bad_models_and_outputs_are_usage_errors(models, tmp_path, capsys):
    _photo(tmp_path / "x.png")
    x = [f"--input={tmp_path / 'x.png'}", f"--output={tmp_path / 'y.png'}"]
    assert _run([f"--model={tmp_path / 'nope'}", *x]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert _run([f"--model={tmp_path / 'empty'}", *x]) == 2
    assert "is not a SavedModel folder" in capsys.readouterr().err
    no_ckpt = tmp_path / "run"
    no_ckpt.mkdir()
    (no_ckpt / "config.json").write_text(TrainConfig(model=TINY).to_json())
    assert _run([f"--model={no_ckpt}", *x]) == 2
    assert f"No checkpoint in '{no_ckpt / 'checkpoints'}'" in capsys.readouterr().err
    assert _run([f"--model={models['exports']}/age_a2b", f"--input={tmp_path / 'x.png'}", f"--output={tmp_path / 'y.jpg'}"]) == 2
    assert _run([f"--model={models['exports']}/age_a2b", f"--input={tmp_path / '*.nothing'}", f"--output={tmp_path}"]) == 2


def test_output_names_do_not_collide():
    names = translate_files.output_paths(["in/a.jpg", "in/a.png", "other/a.jpg", "x/a.jpg", "in/b.bmp"], "out", single_file=False)
    assert [os.path.basename(n) for n in names] == ["a.png", "a_png.png", "a_jpg.png", "a_2.png", "b.png"]


def test_command_line_entry_point(models, tmp_path):
    _photo(tmp_path / "x.png")
    result = subprocess.run(
        [sys.executable, "-m", "tfcyclegan.cli.translate", f"--model={models['exports']}/gender_a2b.v1.float32.tflite",
         f"--input={tmp_path / 'x.png'}", f"--output={tmp_path / 'y.png'}", "--faces=off"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "translated 1 of 1 images (gender_a2b.v1.float32)" in result.stdout
    assert Image.open(tmp_path / "y.png").size == (45, 37)


# -- what goes wrong with outputs and models --------------------------------------------------------


def test_an_output_that_cannot_be_written_fails_that_file_only(models, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b", "c"):
        _photo(folder / f"{name}.png", seed=ord(name))
    out = tmp_path / "out"
    (out / "b.png").mkdir(parents=True)  # a folder named like b's output
    code = _run([f"--model={models['exports']}/age_a2b/1", f"--input={folder}", f"--output={out}"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: {folder / 'b.png'}: cannot write {out / 'b.png'} (a folder has that name)" in err
    assert (out / "a.png").is_file() and (out / "c.png").is_file()  # the rest of the batch is written
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_an_output_folder_that_is_a_file_is_a_usage_error(models, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    _photo(folder / "a.png")
    _photo(folder / "b.png", seed=1)
    existing = tmp_path / "results.txt"
    existing.write_text("keep me")
    assert _run([f"--model={models['exports']}/age_a2b/1", f"--input={folder}", f"--output={existing}"]) == 2
    assert f"--output={existing}: {existing} is a file, not a folder" in capsys.readouterr().err
    assert existing.read_text() == "keep me"
    assert _run([f"--model={models['exports']}/age_a2b/1", f"--input={folder}", f"--output={existing / 'sub'}"]) == 2
    assert "cannot be created" in capsys.readouterr().err


def test_damaged_models_are_named(models, tmp_path, capsys):
    import shutil

    _photo(tmp_path / "x.png")
    io_args = [f"--input={tmp_path / 'x.png'}", f"--output={tmp_path / 'y.png'}"]
    saved = tmp_path / "age_a2b" / "1"
    shutil.copytree(f"{models['exports']}/age_a2b/1", saved)
    data = next((saved / "variables").glob("variables.data-*"))
    os.truncate(data, data.stat().st_size // 2)
    assert _run([f"--model={saved}", *io_args]) == 2
    err = capsys.readouterr().err
    assert f"the SavedModel in {saved} cannot be loaded" in err and "export it again" in err
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"TFL3" + bytes(200))
    assert _run([f"--model={broken}", *io_args]) == 2
    assert f"{broken} is not a readable TFLite file" in capsys.readouterr().err


def test_broken_links_in_an_input_folder_are_counted(models, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    _photo(folder / "a.png")
    os.symlink(folder / "loop1.png", folder / "loop2.png")
    os.symlink(folder / "loop2.png", folder / "loop1.png")  # a link loop
    os.symlink(tmp_path / "gone.png", folder / "gone.png")  # a broken link
    code = _run([f"--model={models['exports']}/age_a2b/1", f"--input={folder}", f"--output={tmp_path / 'out'}"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.err.count("skipped, a broken link or a link loop") == 3
    assert "translated 1 of 1 images" in captured.out and "3 skipped (broken links or link loops)" in captured.out


# -- real photos: --faces -------------------------------------------------------------------------


def _scene(path, sample, indices, placements, size=(640, 480), seed=0):
    """A photo of UTKFace crops placed in a drawn scene, saved as PNG; returns its pixels."""
    from tfcyclegan.faces import scenes

    names = sorted(n for n in os.listdir(sample) if n.endswith(".jpg"))
    crops = [np.asarray(Image.open(sample / names[i]).convert("RGB")) for i in indices]
    pixels, _ = scenes.compose(crops, placements, size=size, seed=seed)
    Image.fromarray(pixels).save(path)
    return pixels


@pytest.fixture(scope="module")
def photos(utkface_sample, tmp_path_factory):
    """Two photos with faces (one and two), one without, and one whose only face is tiny."""
    from tfcyclegan.faces.scenes import Placement, background

    folder = tmp_path_factory.mktemp("photos")
    out = {"folder": folder}
    out["one"] = _scene(folder / "one.png", utkface_sample, [3], [Placement((300, 220), 200, 8)])
    out["two"] = _scene(folder / "two.png", utkface_sample, [7, 900], [Placement((170, 220), 170), Placement((470, 250), 150, -12)], seed=1)
    Image.fromarray(background(320, 240, seed=9)).save(folder / "empty.png")
    _scene(folder / "tiny.png", utkface_sample, [11], [Placement((160, 120), 36)], size=(320, 240), seed=2)
    return out


def test_faces_on_by_default_translates_each_face_and_nothing_else(models, references, photos, tmp_path, capsys):
    out = tmp_path / "out"
    code = _run([f"--model={models['age']}", f"--input={photos['folder'] / 'two.png'}", f"--output={out / 'two.png'}",
                 "--faces_debug", f"--panel={tmp_path / 'panel.png'}", "--faces=" + "on"])
    assert code == 0, capsys.readouterr().err
    assert "--faces=on: 2 faces translated" in capsys.readouterr().out
    result = np.asarray(Image.open(out / "two.png"))
    assert result.shape == photos["two"].shape  # the whole photo, at its own size
    changed = np.any(result != photos["two"], axis=-1)
    assert changed[200:240, 150:190].mean() > 0.5 and changed[230:270, 450:490].mean() > 0.5  # both faces
    assert not changed[:, :60].any() and not changed[:40].any()  # the scene around them is untouched
    assert {p.name for p in out.iterdir()} == {"two.png", "two.faces.png", "two.face0.png", "two.face1.png"}
    size = TrainConfig(model=TINY).schedule.stages[-1].size
    assert Image.open(out / "two.face0.png").size == (2 * size, size)  # before | after, at the training size
    panel = Image.open(tmp_path / "panel.png")
    assert panel.height == 16 + 2 * (256 + 4)  # one row per face: crop, translation


def test_faces_default_follows_the_dataset_the_model_was_trained_on(models, photos, tmp_path, capsys):
    from tfcyclegan.translate.models import load_translator

    assert load_translator(f"{models['exports']}/age_a2b/1").trained_on_faces  # synthetic faces
    folder_run = tmp_path / "folder_run"
    _make_workdir(folder_run, 5)
    config = TrainConfig(model=TINY, data=config_lib.DataConfig(dataset="folder", data_dir=str(tmp_path)))
    (folder_run / "config.json").write_text(config.to_json())
    translator = load_translator(str(folder_run))
    assert not translator.trained_on_faces and translator.size == config.schedule.stages[-1].size
    fv = translate.define_flags(flags.FlagValues())
    fv(["translate", f"--model={folder_run}", f"--input={photos['folder'] / 'empty.png'}", f"--output={tmp_path / 'e.png'}",
        "--faces_debug"])
    assert translate.main(["translate"], fv) == 0  # off: the whole image, no face needed
    captured = capsys.readouterr()
    assert "--faces" not in captured.out
    assert "warning: --faces_debug does nothing with --faces=off (folder_run_a2b was trained on folder" in captured.err
    assert not (tmp_path / "e.faces.png").exists()


def test_a_photo_without_a_face_fails_by_name_and_the_others_go_on(models, photos, tmp_path, capsys):
    folder = photos["folder"]
    code = _run([f"--model={models['exports']}/age_a2b/1", f"--input={folder}", f"--output={tmp_path / 'out'}", "--faces=on"])
    captured = capsys.readouterr()
    assert code == 1
    assert f"error: {folder / 'empty.png'}: no face found; no output written (--faces=auto" in captured.err
    assert (f"error: {folder / 'tiny.png'}: no usable face: 1 face seen, 1 smaller than the minimum face size (40 px)"
            in captured.err)
    assert sorted(os.listdir(tmp_path / "out")) == ["one.png", "two.png"]
    assert "translated 2 of 4 images" in captured.out and "2 failed: empty.png, tiny.png" in captured.out
    assert "3 faces translated, 1 left as they are (1 smaller than the minimum face size (40 px))" in captured.out


def test_faces_auto_translates_a_photo_without_a_face_whole_and_says_so(models, photos, tmp_path, capsys):
    empty = photos["folder"] / "empty.png"
    code = _run([f"--model={models['exports']}/age_a2b/1", f"--input={empty}", f"--output={tmp_path / 'e.png'}", "--faces=auto"])
    captured = capsys.readouterr()
    assert code == 0
    assert f"warning: {empty}: no face found; translated the whole image instead (--faces=auto)" in captured.err
    assert "1 photo without a usable face (translated whole)" in captured.out
    whole = np.asarray(Image.open(tmp_path / "e.png"))
    assert whole.shape == (240, 320, 3) and np.any(whole != np.asarray(Image.open(empty)))


def test_a_chain_runs_per_face_and_min_face_lets_a_small_face_in(models, references, photos, tmp_path, capsys):
    import tfcyclegan.faces as faces_lib

    tiny = photos["folder"] / "tiny.png"
    args = [f"--model={models['age']}", f"--chain={models['exports']}/gender_a2b.v1.float32.tflite",
            f"--input={tiny}", f"--output={tmp_path / 't.png'}", f"--panel={tmp_path / 'p.png'}", "--faces=on", "--min_face=16"]
    assert _run(args) == 0, capsys.readouterr().err
    # The same photo through the library with the composed chain: the same pixels.
    pixels = np.asarray(Image.open(tiny))

    def chain(x):
        step = export_lib.keras_reference(references["age"]["a2b"], x)
        return export_lib.keras_reference(references["gender"]["a2b"], np.clip(step, -1, 1))

    size = TrainConfig(model=TINY).schedule.stages[-1].size
    expected = faces_lib.translate_faces(pixels, chain, crop_size=size, min_face=16).image
    out = np.asarray(Image.open(tmp_path / "t.png"))
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 2
    assert Image.open(tmp_path / "p.png").width > 3 * 256 - 10  # face, age, gender columns
