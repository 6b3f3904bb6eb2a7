import numpy as np
import pytest
import tensorflow as tf

from tfcyclegan import config as C
from tfcyclegan import models
from tfcyclegan.layers import InstanceNormalization, ReflectionPad2D

from conftest import TINY_MODEL


def test_full_size_parameter_counts_match_the_official_implementation():
    assert models.build_generator(C.ModelConfig()).count_params() == 11_378_179
    assert models.build_discriminator(C.ModelConfig()).count_params() == 2_764_737


def test_six_block_generator_and_downsample8_discriminator_options():
    assert models.build_generator(C.ModelConfig(gen_blocks=6)).count_params() == 7_837_699
    disc = models.build_discriminator(C.ModelConfig(disc_type="downsample8", disc_norm="batch"))
    assert disc(np.zeros((2, 64, 96, 3), np.float32)).shape == (2, 8, 12, 1)


def test_same_weights_run_at_every_stage_size_and_non_square():
    gen = models.build_generator(TINY_MODEL)
    disc = models.build_discriminator(TINY_MODEL)
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
    assert models.build_generator(cfg)(x).shape == (2, 32, 32, 3)
    assert models.build_discriminator(cfg)(x).shape == (2, 2, 2, 1)


def test_every_layer_is_named():
    gen = models.build_generator(TINY_MODEL, name="gen_g")
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


def test_mixed_bfloat16_keeps_float32_outputs():
    gen = models.build_generator(TINY_MODEL, dtype="mixed_bfloat16")
    disc = models.build_discriminator(TINY_MODEL, dtype="mixed_bfloat16")
    x = np.zeros((1, 32, 32, 3), np.float32)
    assert gen(x).dtype == tf.float32 and disc(x).dtype == tf.float32
    assert gen.get_layer("c7s1_conv").compute_dtype == "bfloat16"
    assert gen.get_layer("c7s1_conv").kernel.dtype == "float32"
