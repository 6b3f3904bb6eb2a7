import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcyclegan import config as C
from tfcyclegan.model import networks
from tfcyclegan.model.layers import InstanceNormalization, ReflectionPad2D

from conftest import TINY_MODEL


def test_full_size_parameter_counts_match_the_official_implementation():
    assert networks.build_generator(C.ModelConfig()).count_params() == 11_378_179
    assert networks.build_discriminator(C.ModelConfig()).count_params() == 2_764_737


def test_six_block_generator_and_downsample8_discriminator_options():
    assert networks.build_generator(C.ModelConfig(gen_blocks=6)).count_params() == 7_837_699
    disc = networks.build_discriminator(C.ModelConfig(disc_type="downsample8", disc_norm="batch"))
    assert disc(np.zeros((2, 64, 96, 3), np.float32)).shape == (2, 8, 12, 1)


def test_same_weights_run_at_every_stage_size_and_non_square():
    gen = networks.build_generator(TINY_MODEL)
    disc = networks.build_discriminator(TINY_MODEL)
    rng = np.random.default_rng(0)
    for h, w in [(48, 48), (64, 64), (96, 96), (128, 128), (256, 256), (64, 96), (36, 100)]:
        x = rng.uniform(-1, 1, (2, h, w, 3)).astype(np.float32)
        y = gen(x).numpy()
        assert y.shape == (2, h, w, 3) and y.dtype == np.float32
        assert np.all(np.abs(y) <= 1.0)
        assert disc(x).shape == (2, h // 8 - 2, w // 8 - 2, 1)


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_norm_options_build_and_run(norm):
    cfg = C.ModelConfig(gen_filters=8, gen_blocks=1, disc_filters=8, norm=norm, disc_norm=norm)
    x = np.zeros((2, 32, 32, 3), np.float32)
    assert networks.build_generator(cfg)(x).shape == (2, 32, 32, 3)
    assert networks.build_discriminator(cfg)(x).shape == (2, 2, 2, 1)


def test_every_layer_is_named():
    gen = networks.build_generator(TINY_MODEL, name="gen_g")
    names = [layer.name for layer in gen.layers]
    assert len(names) == len(set(names))
    assert "res1_a_conv" in names and "out_tanh" in names


def test_instance_norm_equals_per_image_moments_by_hand():
    x = np.random.default_rng(1).normal(3.0, 2.0, (2, 5, 7, 4)).astype(np.float32)
    out = InstanceNormalization()(x).numpy()
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 1e-5), atol=1e-5)
    # Same as Keras' GroupNormalization(groups=-1), the documented instance-norm equivalent.
    ref = tf.keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, center=False, scale=False)(x).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_instance_norm_hand_written_gradient_equals_autodiff_of_the_formula():
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(1.5, 3.0, (2, 6, 5, 3)).astype(np.float32))
    weights = tf.constant(rng.normal(size=(2, 6, 5, 3)).astype(np.float32))  # a loss that is not symmetric

    def by_formula(x):
        mean, var = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + 1e-5)

    grads = []
    for norm in (InstanceNormalization(), by_formula):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(weights * norm(x) ** 3)
        grads.append(tape.gradient(loss, x).numpy())
    assert np.abs(grads[1]).max() > 0.1
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-4)


def test_reflection_pad_mirrors_without_repeating_the_edge():
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    out = ReflectionPad2D(1)(x).numpy()[0, :, :, 0]
    np.testing.assert_array_equal(out[0], [4, 3, 4, 5, 4])
    np.testing.assert_array_equal(out[:, 0], [4, 1, 4, 7, 4])


@pytest.mark.parametrize("padding,shape", [(1, (2, 4, 7, 3)), (1, (1, 12, 12, 5)), (3, (2, 8, 11, 2)), (3, (1, 16, 9, 1))])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_training_reflection_pad_equals_tf_pad_forward_and_backward(padding, shape, dtype):
    # The training path (slices and a concat, a hand-written gradient) against TensorFlow's
    # MirrorPad and its gradient, at the smallest maps it takes (2p + 2) and larger, non-square.
    rng = np.random.default_rng(0)
    x = tf.cast(rng.normal(size=shape), dtype)
    weights = tf.cast(rng.normal(size=(shape[0], shape[1] + 2 * padding, shape[2] + 2 * padding, shape[3])), dtype)
    layer = ReflectionPad2D(padding)
    results = []
    for training in (True, False):
        fn = tf.function(lambda x: layer(x, training=training), input_signature=[tf.TensorSpec([None, None, None, shape[3]], dtype)])
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.cast(weights, tf.float32))
        results.append((y.numpy().astype(np.float32), tape.gradient(loss, x).numpy().astype(np.float32)))
    (y_fast, g_fast), (y_ref, g_ref) = results
    assert y_fast.shape == y_ref.shape == weights.shape
    np.testing.assert_array_equal(y_fast, y_ref)
    assert np.abs(g_ref).max() > 0.5
    # float32: the same sums; bfloat16: both round the same two- or four-term sums to 8 bits
    np.testing.assert_allclose(g_fast, g_ref, rtol=0 if dtype == "float32" else 2 ** -7, atol=1e-6)


def test_training_reflection_pad_refuses_maps_too_small_for_its_gradient():
    x = tf.zeros((1, 3, 8, 1))  # 3 < 2 * 1 + 2 rows
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = ReflectionPad2D(1)(x, training=True)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tape.gradient(y, x)


def test_mixed_bfloat16_keeps_float32_outputs():
    gen = networks.build_generator(TINY_MODEL, dtype="mixed_bfloat16")
    disc = networks.build_discriminator(TINY_MODEL, dtype="mixed_bfloat16")
    x = np.zeros((1, 32, 32, 3), np.float32)
    assert gen(x).dtype == tf.float32 and disc(x).dtype == tf.float32
    assert gen.get_layer("c7s1_conv").compute_dtype == "bfloat16"
    assert gen.get_layer("c7s1_conv").kernel.dtype == "float32"


@pytest.mark.parametrize("batch", [1, 3])
# Known shapes (eager), unknown H and W (the trainer's trace), nothing known.
@pytest.mark.parametrize("known", ["all", "batch_and_channels", "none"])
def test_fused_instance_norm_equals_the_plain_ops_forward_and_backward(batch, known):
    from tfcyclegan.model.fast_ops import fused_instance_norm, instance_norm

    rng = np.random.default_rng(batch)
    x = tf.constant(rng.normal(3.0, 2.0, (batch, 9, 7, 5)).astype(np.float32))
    weights = tf.constant(rng.normal(size=x.shape).astype(np.float32))
    results = []
    for norm in (fused_instance_norm, instance_norm):
        def value_and_grad(x, norm=norm):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = norm(x, 1e-5)
                loss = tf.reduce_sum(weights * y**3)
            return y, tape.gradient(loss, x)

        if known != "all":
            shape = [batch, None, None, 5] if known == "batch_and_channels" else [None] * 4
            value_and_grad = tf.function(value_and_grad, input_signature=[tf.TensorSpec(shape, tf.float32)])
        results.append(tuple(t.numpy() for t in value_and_grad(x)))
    (y_fused, g_fused), (y_plain, g_plain) = results
    assert np.abs(g_plain).max() > 1.0
    np.testing.assert_allclose(y_fused, y_plain, atol=1e-5)
    np.testing.assert_allclose(g_fused, g_plain, rtol=1e-4, atol=1e-4)
    # In bfloat16 the fused kernel keeps its statistics in float32: only the output is rounded.
    y_bf16 = fused_instance_norm(tf.cast(x, tf.bfloat16), 1e-5)
    assert y_bf16.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(y_bf16, tf.float32).numpy(), y_plain, atol=0.02)


def test_instance_norm_layer_training_and_inference_paths_agree():
    x = np.random.default_rng(4).normal(-1.0, 4.0, (2, 8, 6, 3)).astype(np.float32)
    layer = InstanceNormalization()
    np.testing.assert_allclose(layer(x, training=True).numpy(), layer(x, training=False).numpy(), atol=1e-5)


def test_normed_conv_leaves_out_only_the_bias_instance_norm_cancels():
    from tfcyclegan.model.layers import NormedConv2D, UpConv2D

    x = np.random.default_rng(5).normal(size=(2, 8, 8, 4)).astype(np.float32)
    for plain, normed in ((keras.layers.Conv2D(6, 3), NormedConv2D(6, 3)),
                          (keras.layers.Conv2DTranspose(6, 3, strides=2, padding="same"),
                           UpConv2D(6, add_bias=False))):
        plain.build(x.shape)
        normed.build(x.shape)
        assert len(normed.weights) == 2 and normed.count_params() == plain.count_params()  # the bias is a weight
        normed.set_weights(plain.get_weights())
        normed.bias.assign(np.linspace(-3, 3, 6).astype(np.float32))
        plain.bias.assign(np.linspace(-3, 3, 6).astype(np.float32))
        y_plain, y_normed = plain(x).numpy(), normed(x).numpy()
        np.testing.assert_allclose(y_normed, y_plain - normed.bias.numpy(), atol=1e-5)
        norm = InstanceNormalization()
        np.testing.assert_allclose(norm(y_normed).numpy(), norm(y_plain).numpy(), atol=1e-4)


# One matmul over the unfolded input (6x6) or one per tap (20x20, non-square kernel); with
# few input channels oneDNN's own gradient (the generator's first 7x7 convolution).
@pytest.mark.parametrize("size,kernel_size,channels", [(6, (3, 3), 128), (20, (3, 2), 128), (6, (7, 7), 3)])
def test_bfloat16_conv_filter_gradient_as_matmuls_equals_the_native_gradient(size, kernel_size, channels):
    from tfcyclegan.model.fast_ops import UNFOLD_MAX_PIXELS, conv2d_valid, matmul_filter_gradient_pays

    rng = np.random.default_rng(size)
    kh, kw = kernel_size
    x = tf.constant(rng.normal(size=(2, size + kh - 1, size + kw - 1, channels)).astype(np.float32))
    kernel = tf.constant(rng.normal(0, 0.1, (kh, kw, channels, 8)).astype(np.float32))
    weights = tf.constant(rng.normal(size=(2, size, size, 8)).astype(np.float32))
    assert (2 * size * size <= UNFOLD_MAX_PIXELS) == (size == 6)
    assert matmul_filter_gradient_pays(tf.cast(x, tf.bfloat16), kernel) == (channels >= 128)
    assert not matmul_filter_gradient_pays(x, kernel)  # float32 keeps the native gradient
    grads = {}
    for name, dtype, conv in (("matmuls", tf.bfloat16, conv2d_valid),
                              ("native_float32", tf.float32, lambda a, k: tf.nn.conv2d(a, k, 1, "VALID"))):
        # Traced with unknown H and W, as the trainer's step is.
        @tf.function(input_signature=[tf.TensorSpec([2, None, None, channels], dtype), tf.TensorSpec(kernel.shape, dtype)])
        def input_and_filter_gradients(xc, kc, conv=conv):
            with tf.GradientTape() as tape:
                tape.watch([xc, kc])
                loss = tf.reduce_sum(tf.cast(conv(xc, kc), tf.float32) * weights)
            return tape.gradient(loss, [xc, kc])

        grads[name] = [tf.cast(g, tf.float32).numpy() for g in input_and_filter_gradients(tf.cast(x, dtype), tf.cast(kernel, dtype))]
    for ours, reference in zip(grads["matmuls"], grads["native_float32"]):
        scale = np.abs(reference).max()
        assert scale > 1.0
        np.testing.assert_allclose(ours, reference, atol=0.02 * scale)  # bfloat16 inputs and outputs


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "float32"])
def test_shared_weight_casts_cast_each_weight_once_for_two_generator_calls(precision):
    """A generator called twice under one tape, as in the train step: with shared casts, the same
    loss, one cast each way per weight instead of two, and gradients that differ only by the
    bfloat16 rounding of the two calls' sum (exactly equal in float32, where nothing is cast)."""
    import contextlib

    from tfcyclegan.model.fast_ops import shared_weight_casts
    from tfcyclegan.model.layers import NormedConv2D, UpConv2D

    gen = networks.build_generator(TINY_MODEL, dtype=precision)
    rng = np.random.default_rng(5)
    a = tf.constant(rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32))
    b = tf.constant(rng.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32))
    results = {}
    for shared in (False, True):
        @tf.function
        def loss_and_grads(a, b, shared=shared):
            with tf.GradientTape() as tape, (shared_weight_casts() if shared else contextlib.nullcontext()):
                first = gen(a, training=True)
                second = gen(first[:1] * 0.5 + b, training=True)  # depends on the first call
                loss = tf.reduce_mean(first**2) + tf.reduce_mean(tf.abs(second))
            return loss, tape.gradient(loss, gen.trainable_variables)

        loss, grads = loss_and_grads(a, b)
        graph = loss_and_grads.get_concrete_function(a, b).graph
        casts = sum(op.type == "Cast" for op in graph.get_operations())
        results[shared] = (float(loss), [None if g is None else g.numpy() for g in grads], casts)
    (loss0, grads0, casts0), (loss1, grads1, casts1) = results[False], results[True]
    assert loss1 == loss0
    normed = sum(isinstance(layer, (NormedConv2D, UpConv2D)) for layer in gen.layers)
    assert normed >= 5
    if precision == "float32":
        assert casts1 == casts0
        for g0, g1 in zip(grads0, grads1):
            assert (g0 is None) == (g1 is None)
            if g0 is not None:
                np.testing.assert_array_equal(g1, g0)
    else:
        assert casts0 - casts1 == 2 * normed  # one forward cast and one gradient cast fewer each
        for g0, g1 in zip(grads0, grads1):
            assert (g0 is None) == (g1 is None)
            if g0 is not None:
                scale = np.abs(g0).max()
                assert scale > 0
                np.testing.assert_allclose(g1, g0, atol=2**-7 * scale)  # a bfloat16 sum instead of float32


def test_shared_weight_casts_end_with_their_block():
    from tfcyclegan.model import fast_ops
    from tfcyclegan.model.layers import NormedConv2D

    conv = NormedConv2D(4, 3, dtype="mixed_bfloat16")
    conv.build((1, 6, 6, 2))
    with fast_ops.shared_weight_casts():
        with fast_ops.shared_weight_casts():
            assert fast_ops._shared.casts == {}
            conv(tf.zeros((1, 6, 6, 2)))
            assert len(fast_ops._shared.casts) == 1
        assert fast_ops._shared.casts == {}  # the outer block's own cache again
    assert fast_ops._shared.casts is None


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_leaky_relu_gradient_from_the_output_equals_tensorflows(dtype):
    from tfcyclegan.model.fast_ops import leaky_relu

    x = tf.cast(np.random.default_rng(6).normal(size=(2, 7, 5, 3)), dtype)
    x = tf.tensor_scatter_nd_update(x, [[0, 0, 0, 0]], tf.zeros([1], dtype))  # an exact zero too
    weights = tf.cast(np.random.default_rng(7).normal(size=(2, 7, 5, 3)), dtype)
    results = []
    for fn in (lambda t: leaky_relu(t, 0.2), lambda t: tf.nn.leaky_relu(t, 0.2)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = tf.reduce_sum(tf.cast(y * weights, tf.float32))
        results.append((y.numpy(), tape.gradient(loss, x).numpy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_resize_conv_upsampling_keeps_the_parameter_count_and_runs_at_any_size(mode):
    import dataclasses

    assert networks.build_generator(C.ModelConfig(upsample=mode)).count_params() == 11_378_179
    gen = networks.build_generator(dataclasses.replace(TINY_MODEL, upsample=mode))
    for h, w in [(48, 48), (64, 96), (36, 100)]:
        assert gen(np.zeros((2, h, w, 3), np.float32)).shape == (2, h, w, 3)
    assert "up1_resize" in [layer.name for layer in gen.layers]


def test_upsample2x_nearest_copies_pixels_and_bilinear_equals_keras():
    from tfcyclegan.model.layers import Upsample2x

    x = np.random.default_rng(0).uniform(-1, 1, (2, 5, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(Upsample2x("nearest")(x).numpy(), np.repeat(np.repeat(x, 2, 1), 2, 2))
    expected = keras.layers.UpSampling2D(2, interpolation="bilinear")(x).numpy()
    np.testing.assert_allclose(Upsample2x("bilinear")(x).numpy(), expected, atol=1e-6)


def test_transposed_conv_leaves_a_grid_locked_pattern_that_resize_conv_does_not():
    # Untrained, the k3 s2 transposed convolutions put a large share of the output's power at
    # the period-2 and period-4 frequencies (1, 2 or 4 taps per output pixel); resize + conv does not.
    import dataclasses

    x = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)

    def checker_share(mode):
        keras.utils.set_random_seed(0)
        y = networks.build_generator(dataclasses.replace(TINY_MODEL, upsample=mode))(x).numpy().mean(axis=0)
        power = np.abs(np.fft.fft2(y - y.mean(axis=(0, 1)), axes=(0, 1))) ** 2
        return power[::8, ::8].sum() / power.sum()  # bins at multiples of 1/4 cycle per pixel

    assert checker_share("transpose") > 5 * checker_share("nearest")
