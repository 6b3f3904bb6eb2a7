"""export.py / tfcyclegan.export: SavedModel signatures, TFLite files, parity, manifest."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcyclegan import export as export_lib
from tfcyclegan.export import saved_model
from tfcyclegan.export.tflite import conv_weight_tensors, convert_plain, keep_first_conv_float, mobile_function
from tfcyclegan.io import to_float, to_uint8
from tfcyclegan.model import fast_ops
from tfcyclegan.runtime import private
from tfcyclegan.model.workdir import CheckpointError, restore_generators
from tfcyclegan.config import DataConfig, ModelConfig, TrainConfig
from tfcyclegan.model.fast_ops import reflect_pad_slices
from tfcyclegan.model.networks import build_generator

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ModelConfig(gen_filters=8, gen_blocks=1, disc_filters=8)
SIZE = 48  # the last stage of the default "demo" schedule


def _xnnpack_partitions(path: str, size: int = 64) -> int:
    """How many XNNPACK partitions a TFLite file runs in at size x size: those fed by activations
    (a float16 file also has one that only dequantizes weights)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=1)
    interpreter.resize_tensor_input(0, [1, size, size, 3])
    interpreter.allocate_tensors()
    nodes = private.tflite_ops_details(interpreter)
    activations = {int(interpreter.get_input_details()[0]["index"])}
    activations |= {int(o) for op in nodes if op["op_name"] != "DELEGATE" for o in op["outputs"]}
    return len([op for op in nodes if op["op_name"] == "DELEGATE" and activations & {int(i) for i in op["inputs"]}])


def make_workdir(path, *, model=TINY, seed=0, global_step=7, **config):
    """A workdir in the trainer's format: config.json and checkpoints/ckpt-N with gen_g, gen_f."""
    os.makedirs(path, exist_ok=True)
    cfg = TrainConfig(model=model, **config)
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write(cfg.to_json())
    keras.utils.set_random_seed(seed)
    gen_g, gen_f = build_generator(model, name="gen_g"), build_generator(model, name="gen_f")
    progress = tf.train.Checkpoint(global_step=tf.Variable(global_step, dtype=tf.int64))
    ckpt = tf.train.Checkpoint(gen_g=gen_g, gen_f=gen_f, progress=progress)
    tf.train.CheckpointManager(ckpt, os.path.join(path, "checkpoints"), max_to_keep=3).save()
    return str(path)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("run") / "age")


@pytest.fixture(scope="module")
def exported(workdir, tmp_path_factory):
    """One full export through the command line: both directions, SavedModel and 3 TFLite files."""
    export_dir = str(tmp_path_factory.mktemp("exports"))
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "export.py"), f"--workdir={workdir}", f"--export_dir={export_dir}"],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {"dir": export_dir, "stdout": json.loads(result.stdout), "stderr": result.stderr, "workdir": workdir}


@pytest.fixture(scope="module")
def generators(workdir):
    return restore_generators(workdir)


def _load(exported, direction="a2b"):
    return tf.saved_model.load(os.path.join(exported["dir"], f"age_{direction}", "1"))


# -- layout and manifest ---------------------------------------------------------------------


def test_layout_and_manifest(exported, workdir):
    d = exported["dir"]
    for direction in ("a2b", "b2a"):
        assert os.path.isfile(os.path.join(d, f"age_{direction}", "1", "saved_model.pb"))
        for q in ("float32", "float16", "int8"):
            assert os.path.isfile(os.path.join(d, f"age_{direction}.v1.{q}.tflite"))
    assert not [n for n in os.listdir(d) if n.startswith(".tmp")], "temporary folders left behind"
    manifest = json.load(open(os.path.join(d, "manifest.json")))
    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
    assert manifest["format_version"] == 2 and manifest["models"]["age_a2b"]["latest_version"] == 1
    a2b, b2a = manifest["models"]["age_a2b"]["versions"]["1"], manifest["models"]["age_b2a"]["versions"]["1"]
    assert (a2b["task"], a2b["direction"], a2b["generator"], b2a["direction"], b2a["generator"]) == (
        "age", "a2b", "gen_g", "b2a", "gen_f")
    assert a2b["domains"] == {"a": "age 20-29", "b": "age 50-59"}
    assert (a2b["from_domain"], a2b["to_domain"]) == (b2a["to_domain"], b2a["from_domain"]) == ("age 20-29", "age 50-59")
    assert a2b["global_step"] == 7 and a2b["version"] == 1
    assert a2b["config"] == config
    assert a2b["export_size"] == SIZE
    assert any(h % 4 and w % 4 for h, w in a2b["check_sizes"]), a2b["check_sizes"]
    assert a2b["saved_model"]["path"] == os.path.join("age_a2b", "1")
    assert 0 <= a2b["saved_model"]["keras_max_abs"] <= 1e-5
    for q, bound in (("float32", 1e-3), ("float16", 2e-2)):
        parity = a2b["tflite"][q]["parity"]
        assert parity["passed"] and parity["metric"] == "max_abs" and parity["max_abs"] <= bound
    assert a2b["tflite"]["int8"]["parity"]["psnr_db"] >= 30
    assert a2b["tflite"]["float32"]["input"]["shape"] == [-1, -1, -1, 3]
    # The model's own manifest entry travels with the SavedModel.
    extra = json.load(open(os.path.join(d, "age_b2a", "1", "assets.extra", "tfcyclegan.json")))
    assert extra["direction"] == "b2a" and extra["global_step"] == 7
    assert exported["stdout"]["models"]["age_a2b"]["tflite"]["int8"] == "age_a2b.v1.int8.tflite"
    assert a2b["max_side"] == 2048


def test_variables_are_stored_once(exported, generators):
    params = sum(int(np.prod(w.shape)) for w in generators.gen_g.weights)
    data = os.path.join(exported["dir"], "age_a2b", "1", "variables", "variables.data-00000-of-00001")
    # float32 parameters once, plus the small object graph; a second copy would double it.
    assert params * 4 <= os.path.getsize(data) <= params * 4 * 1.05 + 4096


# -- SavedModel numbers and signatures -------------------------------------------------------


@pytest.mark.parametrize("direction", ["a2b", "b2a"])
def test_saved_model_matches_keras_at_several_sizes(exported, generators, direction):
    loaded = _load(exported, direction)
    generator = generators.gen_g if direction == "a2b" else generators.gen_f
    for batch, h, w in [(1, 48, 48), (2, 37, 49), (1, 21, 30), (1, 8, 8), (1, 64, 40)]:
        x = export_lib.synthetic_images(batch, h, w, seed=h + w)
        out = loaded.signatures["translate_float"](images=tf.constant(x))["images"].numpy()
        assert out.shape == x.shape
        np.testing.assert_allclose(out, export_lib.keras_reference(generator, x), atol=1e-5, rtol=0)
        assert np.all(np.abs(out) <= 1.0)


def test_directions_use_their_own_generator(exported):
    x = tf.constant(export_lib.synthetic_images(1, 32, 32))
    a2b = _load(exported, "a2b").signatures["translate_float"](images=x)["images"]
    b2a = _load(exported, "b2a").signatures["translate_float"](images=x)["images"]
    assert float(tf.reduce_max(tf.abs(a2b - b2a))) > 1e-3


def _png(array, mode=None):
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_uint8_and_encoded_signatures_agree_with_the_float_one(exported):
    loaded = _load(exported)
    x = export_lib.synthetic_images(2, 30, 43, seed=3)
    as_uint8 = to_uint8(x)
    served = loaded.signatures["serving_default"](images=tf.constant(as_uint8))["images"].numpy()
    assert served.dtype == np.uint8 and served.shape == (2, 30, 43, 3)
    float_out = loaded.signatures["translate_float"](images=tf.constant(to_float(as_uint8)))["images"]
    expected = to_uint8(float_out.numpy())
    assert np.abs(served.astype(int) - expected.astype(int)).max() <= 1

    # A batch of different sizes and formats: JPEG, PNG, grey PNG, RGBA PNG.
    jpeg = tf.io.encode_jpeg(as_uint8[0], quality=95).numpy()
    big = to_uint8(export_lib.synthetic_images(1, 41, 17, seed=5))[0]
    batch = tf.constant([jpeg, _png(as_uint8[1]), _png(big, "L"), _png(big, "RGBA")])
    pngs = loaded.signatures["translate_encoded"](image_bytes=batch)["png_bytes"].numpy()
    decoded = [tf.io.decode_png(p).numpy() for p in pngs]
    assert [d.shape for d in decoded] == [(30, 43, 3), (30, 43, 3), (41, 17, 3), (41, 17, 3)]
    np.testing.assert_array_equal(decoded[1], served[1])  # PNG in is lossless: same as uint8 path
    assert not np.array_equal(decoded[2], decoded[3])  # grey input really went through as grey


@pytest.mark.parametrize(
    "signature, images, message",
    [
        ("serving_default", np.zeros((1, 16, 16, 4), np.uint8), "3_channels"),
        ("serving_default", np.zeros((16, 16, 3), np.uint8), "3_channels"),
        ("serving_default", np.zeros((1, 16, 16, 3), np.float32), "uint8"),
        ("translate_float", np.zeros((1, 16, 16, 3), np.uint8), "float"),
        ("translate_float", np.zeros((1, 4, 30, 3), np.float32), "at least 8x8"),
        ("translate_encoded", np.array([b"this is not an image"]), "Unknown image file format"),
    ],
)
def test_signatures_reject_bad_input_with_a_clear_message(exported, signature, images, message):
    fn = _load(exported).signatures[signature]
    key = "image_bytes" if signature == "translate_encoded" else "images"
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError)) as info:
        fn(**{key: tf.constant(images)})
    assert message in str(info.value)


def _cli(*args, timeout=300):
    return subprocess.run(["saved_model_cli", *args], capture_output=True, text=True, timeout=timeout)


def test_saved_model_cli_show_and_run(exported, tmp_path):
    path = os.path.join(exported["dir"], "age_a2b", "1")
    show = _cli("show", "--dir", path, "--all")
    assert show.returncode == 0, show.stderr[-2000:]
    for text in ("signature_def['serving_default']", "signature_def['translate_float']",
                 "signature_def['translate_encoded']", "DT_UINT8", "DT_STRING", "image_bytes", "png_bytes"):
        assert text in show.stdout, text

    x = export_lib.synthetic_images(1, 13, 18, seed=1)
    np.save(tmp_path / "float.npy", x)
    np.save(tmp_path / "uint8.npy", to_uint8(x))
    np.save(tmp_path / "bytes.npy", np.array([_png(to_uint8(x)[0])], dtype=object))
    expected = _load(exported).signatures["translate_float"](images=tf.constant(x))["images"].numpy()
    for signature, inputs, output, check in [
        ("translate_float", f"images={tmp_path / 'float.npy'}", "images.npy",
         lambda out: np.testing.assert_allclose(out, expected, atol=1e-5)),
        ("serving_default", f"images={tmp_path / 'uint8.npy'}", "images.npy",
         lambda out: (out.dtype == np.uint8 and out.shape == (1, 13, 18, 3)) or pytest.fail(str(out.shape))),
        ("translate_encoded", f"image_bytes={tmp_path / 'bytes.npy'}", "png_bytes.npy",
         lambda out: tf.io.decode_png(out[0]).shape == (13, 18, 3) or pytest.fail("bad PNG")),
    ]:
        outdir = tmp_path / signature
        run = _cli("run", "--dir", path, "--tag_set", "serve", "--signature_def", signature,
                   "--inputs", inputs, "--outdir", str(outdir))
        assert run.returncode == 0, run.stderr[-2000:]
        check(np.load(outdir / output, allow_pickle=True))


# -- TFLite ---------------------------------------------------------------------------------


@pytest.mark.parametrize("quantization", ["float32", "float16", "int8"])
def test_tflite_parity_at_export_size_and_after_resize(exported, quantization):
    reference = saved_model.float_translator(_load(exported))
    runner = export_lib.TFLiteRunner(os.path.join(exported["dir"], f"age_a2b.v1.{quantization}.tflite"))
    for h, w in [(SIZE, SIZE), (37, 49), (20, 28), (SIZE, SIZE)]:
        x = export_lib.synthetic_images(1, h, w, seed=h * w)
        out, ref = runner(x), reference(x)
        assert out.shape == x.shape
        if quantization == "int8":
            assert export_lib.psnr_db(out, ref) >= 30
        else:
            assert np.abs(out - ref).max() <= {"float32": 1e-3, "float16": 2e-2}[quantization]


def test_tflite_files_use_builtin_ops_only_and_one_xnnpack_partition(exported):
    for q in ("float32", "float16", "int8"):
        path = os.path.join(exported["dir"], f"age_b2a.v1.{q}.tflite")
        content = open(path, "rb").read()
        ops = export_lib.tflite_operators(content)
        assert not [op for op in ops if op.startswith("CUSTOM")], ops
        # The mobile graph: no TRANSPOSE_CONV (dynamic output shape), MIRROR_PAD only on the input.
        assert "TRANSPOSE_CONV" not in ops and {"CONV_2D", "MEAN", "RSQRT", "DEPTH_TO_SPACE"} <= set(ops)
        # The last convolution computes 2x2 blocks: 8x8 stride 2, 4 x 3 outputs (OHWI), its kernel
        # and tiled bias folded into constants at conversion.
        from ai_edge_litert.tools import flatbuffer_utils

        last = conv_weight_tensors(flatbuffer_utils.read_model_from_bytearray(bytearray(content)))[-1]
        assert list(last.shape) == [12, 8, 8, TINY.gen_filters] and "TILE" not in ops, (last.shape, ops)
        partitions = _xnnpack_partitions(path)
        assert partitions == 1, f"{q}: the graph is split into {partitions} XNNPACK partitions"


def test_int8_keeps_the_first_convolution_float(exported):
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    def read(direction, q):
        with open(os.path.join(exported["dir"], f"age_{direction}.v1.{q}.tflite"), "rb") as f:
            return f.read()

    def first_weights(model):
        tensor = conv_weight_tensors(model)[0]
        return np.frombuffer(bytes(model.buffers[tensor.buffer].data), np.float32)

    int8, float32 = read("a2b", "int8"), read("a2b", "float32")
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(int8))
    convs = conv_weight_tensors(model)
    assert convs[0].type == schema.TensorType.FLOAT32 and int(np.prod(convs[0].shape)) >= 1024
    # The converter leaves weights under 1,024 values in float; all the others are int8.
    others = [t.type for t in convs[1:] if np.prod(t.shape) >= 1024]
    assert others and set(others) == {schema.TensorType.INT8}, others
    reference = flatbuffer_utils.read_model_from_bytearray(bytearray(float32))
    np.testing.assert_array_equal(first_weights(model), first_weights(reference))
    manifest = json.load(open(os.path.join(exported["dir"], "manifest.json")))
    assert "first convolution: float32" in manifest["models"]["age_a2b"]["versions"]["1"]["tflite"]["int8"]["weights"]
    # The weights are checked against the int8 ones: another generator's float32 file is refused.
    plain = convert_plain(export_lib.mobile_generator(restore_generators(exported["workdir"]).gen_g, TINY), "int8")
    assert keep_first_conv_float(plain, float32) == int8  # what export.py wrote
    with pytest.raises(export_lib.ExportError, match="does not match"):
        keep_first_conv_float(plain, read("b2a", "float32"))


def test_check_builtin_only_rejects_flex_ops():
    fn = tf.function(tf.linalg.inv, input_signature=[tf.TensorSpec([3, 3], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    content = converter.convert()
    assert any(op.startswith("CUSTOM:Flex") for op in export_lib.tflite_operators(content))
    with pytest.raises(export_lib.ExportError, match="Flex"):
        export_lib.check_builtin_only(content, "inverse.tflite")


# -- the export graph ------------------------------------------------------------------------


@pytest.mark.parametrize("norm,upsample", [("instance", "transpose"), ("batch", "transpose"), ("none", "transpose"),
                                            ("instance", "nearest"), ("instance", "bilinear")])
def test_export_graph_equals_keras_in_both_formulations(norm, upsample):
    cfg = ModelConfig(gen_filters=8, gen_blocks=2, disc_filters=8, norm=norm, upsample=upsample)
    keras.utils.set_random_seed(1)
    generator = build_generator(cfg, name="gen_g")
    if norm == "batch":  # non-trivial inference statistics
        for layer in generator.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.moving_mean.assign(np.random.normal(0, 0.5, layer.moving_mean.shape))
                layer.moving_variance.assign(np.random.uniform(0.5, 2.0, layer.moving_variance.shape))
                layer.beta.assign(np.random.normal(0, 0.1, layer.beta.shape))
    module = export_lib.ServingModule(generator)
    mobile_model = export_lib.mobile_generator(generator, cfg)
    mobile = mobile_function(mobile_model)
    for batch, h, w in [(2, 32, 32), (1, 24, 40), (1, 19, 33)]:
        x = export_lib.synthetic_images(batch, h, w, seed=h)
        expected = export_lib.keras_reference(generator, x)
        np.testing.assert_allclose(module.translate_float(tf.constant(x))["images"].numpy(), expected, atol=1e-5, rtol=0)
        np.testing.assert_allclose(mobile(tf.constant(x))["images"].numpy(), expected, atol=1e-5, rtol=0)
    assert mobile_model.count_params() == generator.count_params()


@pytest.mark.parametrize("kernel_size", [(7, 7), (3, 3), (1, 1), (5, 3)])
def test_block_convolution_equals_conv2d(kernel_size):
    rng = np.random.default_rng(sum(kernel_size))
    x = tf.constant(rng.normal(size=(2, 14, 10, 5)), tf.float32)
    kernel = tf.constant(rng.normal(size=(*kernel_size, 5, 3)), tf.float32)
    block_kernel = fast_ops.block_kernel(kernel)
    assert block_kernel.shape == (kernel_size[0] + 1, kernel_size[1] + 1, 5, 12)
    y = tf.nn.depth_to_space(tf.nn.conv2d(x, block_kernel, 2, "VALID"), 2)
    expected = tf.nn.conv2d(x, kernel, 1, "VALID")
    assert y.shape == expected.shape
    np.testing.assert_allclose(y.numpy(), expected.numpy(), atol=1e-4, rtol=1e-5)


def test_reflect_pad_from_slices_equals_tf_pad():
    x = tf.reshape(tf.range(2 * 9 * 7 * 3, dtype=tf.float32), (2, 9, 7, 3))
    for p in (1, 3):
        expected = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
        np.testing.assert_array_equal(reflect_pad_slices(x, p).numpy(), expected.numpy())


# -- bad input and options -------------------------------------------------------------------


def test_missing_and_corrupt_checkpoints_name_the_path(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(TrainConfig(model=TINY).to_json())
    with pytest.raises(CheckpointError, match="No checkpoint in .*empty"):
        export_lib.export(str(empty), str(tmp_path / "out"))

    corrupt = make_workdir(tmp_path / "corrupt")
    data = [n for n in os.listdir(os.path.join(corrupt, "checkpoints")) if ".data-" in n][0]
    with open(os.path.join(corrupt, "checkpoints", data), "r+b") as f:
        f.truncate(100)
    with pytest.raises(CheckpointError, match="corrupt"):
        export_lib.export(corrupt, str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out" / "manifest.json")


def test_versions_are_never_overwritten_and_the_manifest_merges(workdir, tmp_path):
    out = str(tmp_path / "exports")
    export_lib.export(workdir, out, formats="saved_model", name="first", log=lambda _: None)
    export_lib.export(workdir, out, formats="saved_model", name="first", log=lambda _: None)  # version 2
    assert sorted(os.listdir(os.path.join(out, "first_a2b"))) == ["1", "2"]
    with pytest.raises(export_lib.ExportError, match="Version 2 of first_a2b exists already"):
        export_lib.export(workdir, out, formats="saved_model", name="first", version=2, log=lambda _: None)
    export_lib.export(workdir, out, formats="saved_model", name="second", version=5, log=lambda _: None)
    models = json.load(open(os.path.join(out, "manifest.json")))["models"]
    assert sorted(models) == ["first_a2b", "first_b2a", "second_a2b", "second_b2a"]
    assert sorted(models["first_a2b"]["versions"]) == ["1", "2"] and models["first_a2b"]["latest_version"] == 2
    assert models["second_b2a"]["latest_version"] == 5
    with pytest.raises(export_lib.ExportError, match="--formats"):
        export_lib.export(workdir, out, formats="onnx")
    with pytest.raises(export_lib.ExportError, match="--tflite_quantization"):
        export_lib.export(workdir, out, formats="tflite", quantizations="int4")


def test_failed_parity_is_loud_and_writes_nothing(workdir, tmp_path, monkeypatch):
    monkeypatch.setitem(export_lib.PARITY, "float16", export_lib.Parity("max_abs", 1e-9))
    out = tmp_path / "exports"
    with pytest.raises(export_lib.ExportError, match=r"age_a2b\.v1\.float16\.tflite failed its parity check"):
        export_lib.export(workdir, str(out), formats="saved_model,tflite", quantizations="float16", log=lambda _: None)
    assert sorted(os.listdir(out)) == []


def test_int8_under_the_psnr_bound_is_refused_with_advice(workdir, tmp_path, monkeypatch):
    monkeypatch.setitem(export_lib.PARITY, "int8", export_lib.Parity("psnr_db", 99.0))
    out = tmp_path / "exports"
    with pytest.raises(export_lib.ExportError, match=r"age_a2b\.v1\.int8\.tflite failed .* PSNR .*>= 99.0.*float16 file"):
        export_lib.export(workdir, str(out), formats="tflite", quantizations="int8", log=lambda _: None)
    assert sorted(os.listdir(out)) == []


def test_default_names_and_domains():
    assert export_lib.default_name(TrainConfig()) == "age"
    folder = TrainConfig(data=DataConfig(dataset="folder", data_dir="/data/selfie2anime/"))
    assert export_lib.default_name(folder) == "selfie2anime"
    tfds = TrainConfig(data=DataConfig(dataset="tfds", tfds_name="cycle_gan/horse2zebra"))
    assert export_lib.default_name(tfds) == "horse2zebra"
    assert export_lib.describe_domains(tfds) == {"a": "horse", "b": "zebra"}
    gender = TrainConfig(data=DataConfig(task="gender"))
    assert export_lib.describe_domains(gender) == {"a": "male", "b": "female"}
    custom = TrainConfig(data=DataConfig(domain_a="age:20-29,gender:1", domain_b="age:50-59,gender:1"))
    assert export_lib.describe_domains(custom)["b"] == "age:50-59,gender:1"


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_resize_conv_generators_export_to_one_xnnpack_graph_with_parity(tmp_path, upsample):
    model = ModelConfig(gen_filters=8, gen_blocks=1, disc_filters=8, upsample=upsample)
    workdir = make_workdir(tmp_path / "run", model=model)
    entries = export_lib.export(workdir, str(tmp_path / "exports"), quantizations="float32", log=lambda _: None)
    item = entries["age_a2b"]["tflite"]["float32"]
    assert item["parity"]["passed"] and not [op for op in item["operators"] if op.startswith("CUSTOM")]
    partitions = _xnnpack_partitions(str(tmp_path / "exports" / item["path"]))
    # Nearest is CONCATENATION + DEPTH_TO_SPACE; bilinear's RESIZE_BILINEAR takes its output size
    # at run time, which XNNPACK does not delegate (docs/mobile.md).
    assert partitions == (1 if upsample == "nearest" else 3), f"{upsample}: {partitions} XNNPACK partitions"
