"""What a server meets: oversized uploads, phone photos with EXIF orientation, empty batches,
and what export.py does when a folder already holds exports."""

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from tfcyclegan import export as export_lib
from tfcyclegan.config import ModelConfig, TrainConfig
from tfcyclegan.export import saved_model
from tfcyclegan.io import to_uint8
from tfcyclegan.model.networks import build_generator

ROOT = Path(__file__).resolve().parents[2]
TINY = ModelConfig(gen_filters=8, gen_blocks=1, disc_filters=8)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny generator saved as a SavedModel that accepts images up to 300 px."""
    keras.utils.set_random_seed(3)
    path = str(tmp_path_factory.mktemp("served") / "1")
    saved_model.save(export_lib.ServingModule(build_generator(TINY, name="gen_g"), max_side=300), path)
    return path


def _jpeg(array, orientation=None, quality=95):
    buf = io.BytesIO()
    exif = None
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
    Image.fromarray(array).save(buf, format="JPEG", quality=quality, **({"exif": exif.tobytes()} if exif else {}))
    return buf.getvalue()


def _photo(h, w, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 255, (h, w, 3)).astype(np.uint8)
    image[: h // 3, : w // 4] = 255  # a corner that shows which way is up
    return image


@pytest.mark.parametrize("orientation", range(1, 9))
def test_decode_upright_turns_as_pil_exif_transpose(orientation):
    data = _jpeg(_photo(24, 40, orientation), orientation)
    ours = to_uint8(saved_model.decode_upright(tf.constant(data)).numpy())
    pil = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert ours.shape == pil.shape == ((24, 40, 3) if orientation < 5 else (40, 24, 3))
    # The two JPEG decoders differ by a few levels; a wrong turn differs by far more.
    assert np.abs(ours.astype(int) - pil.astype(int)).mean() < 3
    assert int(saved_model.exif_orientation(tf.constant(data))) == orientation


def test_orientation_is_1_for_files_without_exif_and_for_garbage():
    assert int(saved_model.exif_orientation(tf.constant(_jpeg(_photo(16, 16))))) == 1
    garbage = b"\xff\xd8" + b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xff" + bytes(50)  # an IFD offset far out of range
    assert int(saved_model.exif_orientation(tf.constant(garbage))) == 1
    assert int(saved_model.exif_orientation(tf.constant(b"not an image"))) == 1


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP"])
def test_encoded_size_reads_the_header(fmt):
    buf = io.BytesIO()
    Image.fromarray(_photo(37, 61)).save(buf, format=fmt)
    assert [int(v) for v in saved_model.encoded_size(tf.constant(buf.getvalue()))] == [37, 61]


def test_an_exif_rotated_phone_photo_comes_back_upright(served):
    loaded = tf.saved_model.load(served)
    data = _jpeg(_photo(48, 80, 1), orientation=6)  # stored landscape, shown portrait
    png = loaded.signatures["translate_encoded"](image_bytes=tf.constant([data]))["png_bytes"].numpy()[0]
    out = tf.io.decode_png(png).numpy()
    assert out.shape == (80, 48, 3)
    upright = saved_model.decode_upright(tf.constant(data))[None]
    expected = to_uint8(loaded.signatures["translate_float"](images=upright)["images"].numpy()[0])
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1


def test_a_5000px_jpeg_is_refused_from_its_header_in_bounded_memory(served, tmp_path):
    """One 4.9 MB upload of 5000x5000 pixels allocated [1, 5000, 5000, 64] floats and got the
    server killed; now the header is read, the request refused, and the process grows by less
    than 150 MB (the decoded image alone would be 75 MB, the first activation 800 MB here)."""
    big = tmp_path / "big.jpg"
    Image.fromarray(np.full((5000, 5000, 3), 128, np.uint8)).save(big, quality=90)
    script = textwrap.dedent(f"""
        import json, resource, time
        import tensorflow as tf
        loaded = tf.saved_model.load({served!r})
        fn = loaded.signatures["translate_encoded"]
        fn(image_bytes=tf.constant([tf.io.encode_jpeg(tf.zeros([16, 16, 3], tf.uint8)).numpy()]))  # warm up
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.time()
        try:
            fn(image_bytes=tf.constant([open({str(big)!r}, "rb").read()]))
            error = None
        except tf.errors.InvalidArgumentError as e:
            error = e.message
        print(json.dumps({{"error": error, "seconds": time.time() - start,
                          "grew_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}}))
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["error"] and "image too large: this model accepts at most 300 pixels" in result["error"]
    assert result["grew_mb"] < 150, result
    assert result["seconds"] < 10, result


@pytest.mark.parametrize("signature, images", [
    ("serving_default", np.zeros((1, 301, 40, 3), np.uint8)),
    ("translate_float", np.zeros((1, 40, 301, 3), np.float32)),
])
def test_oversized_arrays_are_refused_with_the_limit(served, signature, images):
    fn = tf.saved_model.load(served).signatures[signature]
    with pytest.raises(tf.errors.InvalidArgumentError, match="at most 300 pixels on the longer side"):
        fn(images=tf.constant(images))


def test_an_empty_batch_is_refused_in_words(served):
    fn = tf.saved_model.load(served).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="the batch holds no image"):
        fn(images=tf.zeros([0, 16, 16, 3], tf.uint8))


# -- export folders --------------------------------------------------------------------------------


def _workdir(path, seed, step):
    os.makedirs(path, exist_ok=True)
    cfg = TrainConfig(model=TINY)
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write(cfg.to_json())
    keras.utils.set_random_seed(seed)
    gen_g, gen_f = build_generator(TINY, name="gen_g"), build_generator(TINY, name="gen_f")
    progress = tf.train.Checkpoint(global_step=tf.Variable(step, dtype=tf.int64))
    tf.train.CheckpointManager(tf.train.Checkpoint(gen_g=gen_g, gen_f=gen_f, progress=progress),
                               os.path.join(path, "checkpoints"), max_to_keep=1).save()
    return str(path)


def test_a_second_run_exported_into_the_same_folder_replaces_nothing(tmp_path):
    out = str(tmp_path / "exports")
    first, second = _workdir(tmp_path / "one", 0, 10), _workdir(tmp_path / "two", 1, 20)
    export_lib.export(first, out, quantizations="float16", log=lambda _: None)
    before = {n: Path(out, n).read_bytes() for n in os.listdir(out) if n.endswith(".tflite")}
    assert sorted(before) == ["age_a2b.v1.float16.tflite", "age_b2a.v1.float16.tflite"]
    export_lib.export(second, out, quantizations="float16", log=lambda _: None)
    after = {n: Path(out, n).read_bytes() for n in os.listdir(out) if n.endswith(".tflite")}
    assert {n: after[n] for n in before} == before  # the first run's files, byte for byte
    assert sorted(set(after) - set(before)) == ["age_a2b.v2.float16.tflite", "age_b2a.v2.float16.tflite"]
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    versions = manifest["models"]["age_a2b"]["versions"]
    assert sorted(versions) == ["1", "2"] and manifest["models"]["age_a2b"]["latest_version"] == 2
    assert (versions["1"]["global_step"], versions["2"]["global_step"]) == (10, 20)
    assert versions["1"]["workdir"] != versions["2"]["workdir"]
    with pytest.raises(export_lib.ExportError, match=r"Version 1 of age_a2b exists already .*age_a2b\.v1\.float16\.tflite"):
        export_lib.export(second, out, formats="tflite", quantizations="float16", version=1, log=lambda _: None)


def test_a_manifest_of_the_old_format_keeps_its_entries(tmp_path):
    out = tmp_path / "exports"
    out.mkdir()
    old = {"format_version": 1, "models": {"age_a2b": {"name": "age_a2b", "version": 3, "global_step": 5}}}
    (out / "manifest.json").write_text(json.dumps(old))
    export_lib.export(_workdir(tmp_path / "run", 0, 10), str(out), formats="saved_model", log=lambda _: None)
    models = json.load(open(out / "manifest.json"))["models"]
    assert sorted(models["age_a2b"]["versions"]) == ["3", "4"]  # the next free version is 4
    assert models["age_a2b"]["versions"]["3"]["global_step"] == 5


def test_a_damaged_manifest_is_refused_and_kept(tmp_path):
    out = tmp_path / "exports"
    out.mkdir()
    (out / "manifest.json").write_text("{ not json")
    with pytest.raises(export_lib.ExportError, match=r"manifest.json is damaged .*move it away"):
        export_lib.export(_workdir(tmp_path / "run", 0, 10), str(out), log=lambda _: None)
    assert (out / "manifest.json").read_text() == "{ not json"


def test_export_dir_that_is_a_file_is_a_message_and_exit_1(tmp_path):
    blocker = tmp_path / "exports"
    blocker.write_text("")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "export.py"), f"--workdir={_workdir(tmp_path / 'run', 0, 1)}",
                           f"--export_dir={blocker}"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1
    assert f"--export_dir={blocker} is a file, not a folder" in proc.stderr and "Traceback" not in proc.stderr
