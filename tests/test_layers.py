"""Layers: shapes of the PyTorch-equivalent blocks and the spectral-norm state contract."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from instagan_jax import convolution, layers


def test_instance_norm_is_per_example_and_channel():
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 6, 5)) * 4 + 2
    y = layers.instance_norm(x)
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(1, 2)), 1, atol=1e-3)
    # example 0 alone gives the same numbers: no statistics across the batch
    np.testing.assert_allclose(layers.instance_norm(x[:1]), y[:1], atol=1e-6)


def test_reflect_pad_mirrors_without_repeating_the_edge():
    x = jnp.arange(12.0).reshape(1, 3, 4, 1)
    y = layers.reflect_pad(x, 1)
    chex.assert_shape(y, (1, 5, 6, 1))
    assert y[0, 0, 1, 0] == x[0, 1, 0, 0] and y[0, 1, 0, 0] == x[0, 0, 1, 0]


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 8])
def test_sum_rows_and_repeat_rows_match_sum_and_broadcast(rows):
    x = jax.random.normal(jax.random.PRNGKey(rows), (3, rows, 4, 5, 2))
    total = layers.sum_rows(x)
    chex.assert_shape(total, (3, 4, 5, 2))
    np.testing.assert_allclose(total, x.sum(axis=1), rtol=1e-6, atol=1e-6)
    # repeat_rows: broadcast forward, its gradient the sum over the rows
    common = jax.random.normal(jax.random.PRNGKey(99), (3, 4, 5, 2))
    weights = jnp.arange(1.0, rows + 1)[None, :, None, None, None]
    ours = jax.grad(lambda c: jnp.sum(jnp.sin(layers.repeat_rows(c, rows)) * weights))(common)
    broadcast = lambda c: jnp.broadcast_to(c[:, None], (3, rows, 4, 5, 2))
    expected = jax.grad(lambda c: jnp.sum(jnp.sin(broadcast(c)) * weights))(common)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_encoder_decoder_round_trip_shapes():
    x = jnp.zeros((2, 20, 12, 3))
    enc = layers.Encoder(ngf=2, n_blocks=1)
    f, _ = enc.init_with_output(jax.random.PRNGKey(0), x)
    chex.assert_shape(f, (2, 5, 3, 8))
    dec = layers.Decoder(width=2, out_channels=3)
    y, _ = dec.init_with_output(jax.random.PRNGKey(1), f)
    chex.assert_shape(y, (2, 20, 12, 3))
    assert np.all(np.abs(np.asarray(y)) <= 1)


def test_spectral_conv_updates_u_only_when_asked():
    conv = layers.SpectralConv(6, stride=1)
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 8, 8, 3))
    variables = conv.init(jax.random.PRNGKey(1), x, update_stats=False)
    u0 = variables["spectral"]["u"]
    y_frozen = conv.apply(variables, x, update_stats=False)
    _, state = conv.apply(variables, x, update_stats=True, mutable=["spectral"])
    assert not np.allclose(state["spectral"]["u"], u0)
    np.testing.assert_allclose(np.linalg.norm(state["spectral"]["u"]), 1, atol=1e-6)
    # without update the output is the same on every call
    np.testing.assert_array_equal(conv.apply(variables, x, update_stats=False), y_frozen)


def test_spectral_conv_normalises_by_the_top_singular_value():
    conv = layers.SpectralConv(4, kernel_size=3, stride=1, padding=1)
    x = jnp.zeros((1, 5, 5, 2))
    variables = conv.init(jax.random.PRNGKey(2), x, update_stats=False)
    for _ in range(100):  # converge the power iteration
        _, state = conv.apply(variables, x, update_stats=True, mutable=["spectral"])
        variables = {**variables, **state}
    kernel = variables["params"]["kernel"]
    sigma = np.linalg.svd(np.asarray(kernel).reshape(-1, 4), compute_uv=False)[0]
    # a delta input picks out the normalised kernel: its top singular value is 1
    delta = jnp.zeros((1, 5, 5, 2)).at[0, 2, 2, 0].set(1.0)
    bias = variables["params"]["bias"]
    y = conv.apply(variables, delta, update_stats=False) - bias
    np.testing.assert_allclose(y[0, 1:4, 1:4, :], np.asarray(kernel)[::-1, ::-1, 0, :] / sigma, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "size, kernel, stride, padding, out",
    [
        (16, 7, 1, 0, 5),
        (16, 3, 2, 1, 5),
        (17, 3, 2, 1, 5),
        (9, 4, 2, 1, 5),
        (8, 4, 1, 1, 5),
        (8, 2, 1, (0, 1), 5),
        (16, 7, 1, 0, 1),
        (8, 4, 1, 1, 3),
        (4, 4, 1, 1, 5),  # inputs and output gradients smaller than the kernel
        (13, 4, 2, 0, 5),  # strided gradients by phases: rows the kernel never reaches
        (12, 5, 3, 2, 5),
        (9, 1, 2, 0, 5),  # a kernel smaller than the stride: phases it never reads
    ],  # fmt: skip
)
def test_conv2d_equals_xla_convolution_values_and_gradients(monkeypatch, size, kernel, stride, padding, out):
    """conv2d's faster CPU forms (few outputs, hand-written gradients) give XLA's numbers up to rounding."""
    monkeypatch.setenv(convolution.CONVOLUTIONS_VARIABLE, "cpu")  # on any backend
    lo, hi = (padding, padding) if isinstance(padding, int) else padding
    pads = ((lo, hi), (lo, hi))
    x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size - 1, 8))
    w = jax.random.normal(jax.random.PRNGKey(1), (kernel, kernel, 8, out))
    reference = lambda x, w: jax.lax.conv_general_dilated(
        x, w, (stride, stride), pads, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    ours = lambda x, w: convolution.conv2d(x, w, stride, pads)
    loss = lambda conv: lambda x, w: jnp.sum(jnp.sin(conv(x, w)))
    pairs = [(ours(x, w), reference(x, w))]
    pairs += zip(jax.grad(loss(ours), (0, 1))(x, w), jax.grad(loss(reference), (0, 1))(x, w), strict=True)
    for a, b in pairs:
        chex.assert_equal_shape([a, b])
        np.testing.assert_allclose(a, b, atol=1e-5 * float(np.abs(b).max()))  # summation order only


@pytest.mark.parametrize("kernel_shape, as_convolution", [((7, 7, 16, 3), False), ((4, 4, 8, 1), False),
                                                          ((7, 7, 2, 3), True), ((3, 3, 16, 8), True)])  # fmt: skip
def test_only_layers_narrowing_from_many_inputs_to_few_outputs_run_as_tap_products(
    monkeypatch, kernel_shape, as_convolution
):
    monkeypatch.setenv(convolution.CONVOLUTIONS_VARIABLE, "cpu")
    x, kernel = jnp.ones((1, 9, 9, kernel_shape[2])), jnp.ones(kernel_shape)
    jaxpr = str(jax.make_jaxpr(lambda x, k: convolution.conv2d(x, k, 1, ((1, 1), (1, 1))))(x, kernel))
    assert ("conv_general_dilated" in jaxpr) == as_convolution


@pytest.mark.parametrize("upsample", ["transpose", "resize_conv"])
def test_upsampling_layers_double_the_size(upsample):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 3, 4))
    y, _ = layers.UPSAMPLING[upsample](6).init_with_output(jax.random.PRNGKey(1), x)
    chex.assert_shape(y, (2, 10, 6, 6))


def test_resize_conv_has_no_checkerboard_where_the_transposed_convolution_does():
    """On a constant input every resize-conv output pixel sees the same taps: a constant output
    (the border included, thanks to reflect padding); the transposed convolution's even and
    odd output pixels see different taps, so a grid pattern appears."""
    x = jnp.ones((1, 6, 6, 4))
    resized, _ = layers.ResizeConv(3).init_with_output(jax.random.PRNGKey(0), x)
    np.testing.assert_allclose(resized, np.broadcast_to(resized[:, :1, :1], resized.shape), rtol=1e-5, atol=1e-6)
    transposed, _ = layers.UpsampleConv(3).init_with_output(jax.random.PRNGKey(0), x)
    inside = np.asarray(transposed)[0, 2:-2, 2:-2]
    assert np.abs(inside[0::2, 0::2] - inside[1::2, 1::2]).max() > 1e-3  # even and odd pixels differ


def _assert_layer_matches(layer, by_definition, *inputs):
    """layer.apply(variables, *inputs) equals by_definition(variables, *inputs) in values and in
    the gradients to the parameters and every input, at perturbed (non-zero-bias) parameters."""
    variables = layer.init(jax.random.PRNGKey(1), *inputs)
    variables = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.PRNGKey(2), a.shape), variables)
    np.testing.assert_allclose(layer.apply(variables, *inputs), by_definition(variables, *inputs), atol=1e-5)
    loss = lambda f: lambda *args: jnp.sum(f(*args) ** 2)
    argnums = tuple(range(len(inputs) + 1))
    ours = jax.grad(loss(layer.apply), argnums)(variables, *inputs)
    theirs = jax.grad(loss(by_definition), argnums)(variables, *inputs)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()))


def test_resize_conv_equals_convolving_the_nearest_upsampled_image():
    """The phase form computes exactly the layer's definition: upsample, reflect pad, conv3x3."""

    def by_definition(variables, x):
        kernel, bias = variables["params"]["conv"]["kernel"], variables["params"]["conv"]["bias"]
        upsampled = layers.reflect_pad(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2), 1)
        return jax.lax.conv_general_dilated(upsampled, kernel, (1, 1), "VALID",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias  # fmt: skip

    _assert_layer_matches(layers.ResizeConv(6), by_definition, jax.random.normal(jax.random.PRNGKey(0), (2, 5, 7, 4)))


def test_upsample_conv_equals_the_transposed_convolution_values_and_gradients():
    """The phase form against ConvTranspose2d(3, 2, padding=1, output_padding=1) by its textbook
    definition: the 2x-dilated input convolved with the flipped kernel, padded (1, 2)."""

    def by_definition(variables, x):
        kernel, bias = variables["params"]["kernel"], variables["params"]["bias"]  # (kh, kw, out, in)
        flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
        return jax.lax.conv_general_dilated(x, flipped, (1, 1), ((1, 2), (1, 2)), lhs_dilation=(2, 2),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias  # fmt: skip

    _assert_layer_matches(layers.UpsampleConv(6), by_definition, jax.random.normal(jax.random.PRNGKey(0), (2, 5, 4, 3)))


@pytest.mark.parametrize("upsample", sorted(layers.UPSAMPLING))
def test_upsampling_computes_shared_channels_once_per_group_as_if_concatenated(upsample):
    """The mask decoder's first layer: per-slot features (2 examples x 3 slots) and each
    example's context, convolved once per example, equal the layer on [slot, context]."""
    layer = layers.UPSAMPLING[upsample](6)
    per_slot = jax.random.normal(jax.random.PRNGKey(0), (6, 5, 4, 3))
    shared = jax.random.normal(jax.random.PRNGKey(3), (2, 5, 4, 5))

    def concatenated(variables, x, s):
        return layer.apply(variables, jnp.concatenate([x, jnp.repeat(s, 3, axis=0)], axis=-1))

    _assert_layer_matches(layer, concatenated, per_slot, shared)


def test_convolution_forms_follow_the_backend_unless_the_variable_says(monkeypatch):
    x, kernel = jnp.ones((1, 9, 9, 16)), jnp.ones((7, 7, 16, 3))  # the CPU forms: tap products, no convolution
    traced = lambda: str(jax.make_jaxpr(lambda x, k: convolution.conv2d(x, k, 1, ((1, 1), (1, 1))))(x, kernel))
    convolves = lambda: "conv_general_dilated" in traced()
    monkeypatch.delenv(convolution.CONVOLUTIONS_VARIABLE, raising=False)
    assert convolution.convolution_forms() == "cpu" and not convolves()
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert convolution.convolution_forms() == "native" and convolves()
    monkeypatch.setenv(convolution.CONVOLUTIONS_VARIABLE, "cpu")
    assert convolution.convolution_forms() == "cpu" and not convolves()
    monkeypatch.setenv(convolution.CONVOLUTIONS_VARIABLE, "cuda")
    with pytest.raises(ValueError, match=r"INSTAGAN_JAX_CONVOLUTIONS must be one of .*'cuda'"):
        convolution.conv2d(x, kernel, 1, ((1, 1), (1, 1)))


def test_a_substituted_convolution_takes_the_general_forms_place_and_only_there(monkeypatch):
    monkeypatch.setenv(convolution.CONVOLUTIONS_VARIABLE, "cpu")
    seen = []

    def stand_in(x, kernel, stride, padding):
        seen.append((kernel.shape, stride))
        return jnp.zeros((x.shape[0], 4, 4, kernel.shape[-1]))

    x = jnp.ones((1, 8, 8, 16))
    with convolution.substituted(stand_in):
        strided = convolution.conv2d(x, jnp.ones((3, 3, 16, 8)), 2, ((1, 1), (1, 1)))
        narrow = convolution.conv2d(x, jnp.ones((7, 7, 16, 3)), 1, ((3, 3), (3, 3)))  # the output layers' own form
    assert seen == [((3, 3, 16, 8), 2)] and float(jnp.abs(strided).max()) == 0.0
    assert narrow.shape == (1, 8, 8, 3) and float(narrow.min()) > 0
    assert float(convolution.conv2d(x, jnp.ones((3, 3, 16, 8)), 2, ((1, 1), (1, 1))).min()) > 0  # restored after


def test_forms_chosen_for_a_block_override_the_backend_and_the_variable(monkeypatch):
    monkeypatch.setenv(convolution.CONVOLUTIONS_VARIABLE, "cpu")
    with convolution.using("native"):
        assert convolution.convolution_forms() == "native"
        with convolution.using("cpu"):
            assert convolution.convolution_forms() == "cpu"
        assert convolution.convolution_forms() == "native"
    assert convolution.convolution_forms() == "cpu"
    with pytest.raises(ValueError, match="must be one of"), convolution.using("cuda"):
        pass
