"""Networks: golden parity with the authors' PyTorch code (batch 1) and set semantics."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from instagan_jax import convolution
from instagan_jax.models import ModelSpec, init_networks
from instagan_jax.torch_import import convert_checkpoint_dir


def nhwc(x):
    return jnp.asarray(np.asarray(x).transpose(0, 2, 3, 1))


def nchw(x):
    return np.asarray(x).transpose(0, 3, 1, 2)


def test_set_generator_matches_reference(converted, golden_dir):
    spec, nets = converted
    golden = np.load(golden_dir / "forward.npz")
    out = spec.generator().apply(nets["G_A"], nhwc(golden["input"]))
    # two instance slots are decoded, two empty ones pass through as -1
    np.testing.assert_allclose(nchw(out), golden["g_a_out"], atol=1e-5)
    np.testing.assert_array_equal(nchw(out)[:, 5:], -1)


def test_set_discriminator_and_power_iteration_match_reference(converted, golden_dir):
    spec, nets = converted
    golden = np.load(golden_dir / "forward.npz")
    disc = spec.discriminator()
    logits, state = disc.apply(nets["D_A"], nhwc(golden["input"]), update_stats=True, mutable=["spectral"])
    np.testing.assert_allclose(nchw(logits), golden["d_a_out"], atol=1e-5)
    u = state["spectral"]["features_img"]["conv_1"]["u"]
    np.testing.assert_allclose(u, golden["d_a_u_after/feature_img.2.module.weight_u"], atol=1e-6)
    second = disc.apply({**nets["D_A"], **state}, nhwc(golden["input"]))
    np.testing.assert_allclose(nchw(second), golden["d_a_out_second_call"], atol=1e-5)


def test_cyclegan_baseline_matches_reference(golden_dir):
    spec, nets = convert_checkpoint_dir(str(golden_dir / "cyclegan"))
    assert spec.model == "cycle_gan" and spec.n_blocks == 9
    golden = np.load(golden_dir / "cyclegan" / "forward.npz")
    x = nhwc(golden["input"])
    np.testing.assert_allclose(nchw(spec.generator().apply(nets["G_A"], x)), golden["g_a_out"], atol=1e-5)
    np.testing.assert_allclose(nchw(spec.discriminator().apply(nets["D_A"], x)), golden["d_a_out"], atol=1e-5)


# --- set semantics on a tiny random model ---------------------------------------------------

H, W = 32, 24


def blob(cy, cx, r):
    y, x = np.mgrid[:H, :W]
    return np.where((y - cy) ** 2 + (x - cx) ** 2 <= r * r, 1.0, -1.0).astype(np.float32)


@pytest.fixture(scope="module")
def tiny():
    spec = ModelSpec(ngf=2, ndf=2, n_blocks=1)
    variables = init_networks(spec, jax.random.PRNGKey(0), H, W, 3)
    gen = jax.jit(lambda x: spec.generator().apply(variables["G_A"], x))
    disc = jax.jit(lambda x: spec.discriminator().apply(variables["D_A"], x))
    return spec, variables, gen, disc


def make_input(masks, seed=0):
    image = jax.random.uniform(jax.random.PRNGKey(seed), (1, H, W, 3), minval=-1, maxval=1)
    return jnp.concatenate([image, jnp.stack(masks, -1)[None]], -1)


EMPTY = -np.ones((H, W), np.float32)


def test_output_shapes_and_dtypes(tiny):
    _, _, gen, disc = tiny
    x = make_input([blob(8, 8, 5), blob(20, 14, 6), EMPTY])
    chex.assert_shape(gen(x), (1, H, W, 6))
    chex.assert_type(gen(x), jnp.float32)
    chex.assert_shape(disc(x), (1, 2, 1, 1))


def test_permuting_instances_permutes_masks_and_keeps_image(tiny):
    _, _, gen, disc = tiny
    a, b = blob(8, 8, 5), blob(20, 14, 6)
    out_ab, out_ba = gen(make_input([a, b, EMPTY])), gen(make_input([b, a, EMPTY]))
    np.testing.assert_allclose(out_ab[..., :3], out_ba[..., :3], atol=1e-4)
    np.testing.assert_allclose(out_ab[..., 3], out_ba[..., 4], atol=1e-4)
    np.testing.assert_allclose(out_ab[..., 4], out_ba[..., 3], atol=1e-4)
    np.testing.assert_allclose(disc(make_input([a, b, EMPTY])), disc(make_input([b, a, EMPTY])), atol=1e-4)


def test_adding_empty_slots_changes_nothing(tiny):
    spec, variables, gen, disc = tiny
    a, b = blob(8, 8, 5), blob(20, 14, 6)
    short = spec.generator().apply(variables["G_A"], make_input([a, b]))
    long = gen(make_input([a, EMPTY, b]))
    np.testing.assert_allclose(long[..., :3], short[..., :3], atol=1e-4)
    np.testing.assert_allclose(long[..., [3, 5]], short[..., 3:], atol=1e-4)
    np.testing.assert_array_equal(long[0, ..., 4], EMPTY)
    d_short = spec.discriminator().apply(variables["D_A"], make_input([a, b]))
    np.testing.assert_allclose(disc(make_input([a, EMPTY, b])), d_short, atol=1e-4)


def test_examples_of_a_batch_are_independent(tiny):
    _, _, gen, disc = tiny
    x0 = make_input([blob(8, 8, 5), EMPTY, EMPTY], seed=1)
    x1 = make_input([blob(20, 14, 6), blob(6, 18, 4), blob(26, 4, 3)], seed=2)
    both = gen(jnp.concatenate([x0, x1]))
    np.testing.assert_allclose(both[:1], gen(x0), atol=1e-4)
    np.testing.assert_allclose(both[1:], gen(x1), atol=1e-4)
    d_both = disc(jnp.concatenate([x0, x1]))
    np.testing.assert_allclose(d_both[:1], disc(x0), atol=1e-4)
    np.testing.assert_allclose(d_both[1:], disc(x1), atol=1e-4)


def test_all_empty_example_keeps_its_slots_and_has_an_empty_set(tiny):
    spec, variables, gen, _ = tiny
    x = make_input([EMPTY, EMPTY, EMPTY])
    out = gen(x)
    np.testing.assert_array_equal(out[..., 3:], -1)
    assert np.all(np.isfinite(out))


def test_jit_and_eager_agree(tiny):
    spec, variables, gen, _ = tiny
    x = make_input([blob(8, 8, 5), blob(20, 14, 6), EMPTY])
    eager = spec.generator().apply(variables["G_A"], x)
    np.testing.assert_allclose(gen(x), eager, atol=1e-5)


def test_parameter_counts_follow_the_paper_architecture():
    # ngf 64, 9 blocks: each encoder 7.8M parameters; ndf 64 set discriminator 2.8M + classifier
    variables = jax.eval_shape(lambda: init_networks(ModelSpec(), jax.random.PRNGKey(0), 64, 64, 2))
    count = lambda tree: sum(np.prod(x.shape) for x in jax.tree.leaves(tree))
    g = variables["G_A"]["params"]
    assert count(g["encoder_img"]) == count(g["encoder_seg"]) + 2 * 49 * 64  # 3 vs 1 input channels
    assert count(g["decoder_img"]["up_0"]["kernel"]) == 9 * 512 * 256  # concat of 2 x 256 -> 256
    assert count(g["decoder_seg"]["up_0"]["kernel"]) == 9 * 768 * 384  # concat of 3 x 256 -> 384
    assert variables["D_A"]["params"]["classifier"]["conv_0"]["kernel"].shape == (4, 4, 512, 1024)


def test_a_narrower_mask_path_sizes_each_decoder_by_its_inputs_and_keeps_set_semantics():
    spec = ModelSpec(ngf=4, ndf=2, n_blocks=1, ngf_mask=2)
    g = init_networks(spec, jax.random.PRNGKey(0), H, W, 3)["G_A"]
    chex.assert_shape(g["params"]["encoder_seg"]["conv_in"]["kernel"], (7, 7, 1, 2))
    chex.assert_shape(g["params"]["encoder_img"]["conv_in"]["kernel"], (7, 7, 3, 4))
    # [image 16, set 8] -> 2 x (4 + 2); [slot 8, image 16, set 8] -> 2 x (4 + 2 x 2); kernels (3, 3, out, in)
    chex.assert_shape(g["params"]["decoder_img"]["up_0"]["kernel"], (3, 3, 12, 24))
    chex.assert_shape(g["params"]["decoder_seg"]["up_0"]["kernel"], (3, 3, 16, 32))
    gen = jax.jit(lambda x: spec.generator().apply(g, x))
    a, b = blob(8, 8, 5), blob(20, 14, 6)
    out_ab, out_ba = gen(make_input([a, b, EMPTY])), gen(make_input([b, a, EMPTY]))
    np.testing.assert_allclose(out_ab[..., :3], out_ba[..., :3], atol=1e-4)
    np.testing.assert_allclose(out_ab[..., 3], out_ba[..., 4], atol=1e-4)
    np.testing.assert_array_equal(out_ab[0, ..., 5], EMPTY)


def test_a_narrower_mask_decoder_changes_only_the_mask_decoder_and_keeps_set_semantics():
    spec = ModelSpec(ngf=4, ndf=2, n_blocks=1, ngf_mask=2, mask_decoder_width=3)
    g = init_networks(spec, jax.random.PRNGKey(0), H, W, 3)["G_A"]
    wide = init_networks(dataclasses.replace(spec, mask_decoder_width=0), jax.random.PRNGKey(0), H, W, 3)["G_A"]
    # [slot 8, image 16, set 8] -> 2 x 3 -> 3 -> 1 (its default width: 32 / 4 = 8); kernels (3, 3, out, in)
    chex.assert_shape(g["params"]["decoder_seg"]["up_0"]["kernel"], (3, 3, 6, 32))
    chex.assert_shape(g["params"]["decoder_seg"]["up_1"]["kernel"], (3, 3, 3, 6))
    chex.assert_shape(g["params"]["decoder_seg"]["conv_out"]["kernel"], (7, 7, 3, 1))
    chex.assert_shape(wide["params"]["decoder_seg"]["up_1"]["kernel"], (3, 3, 8, 16))
    for name in ("encoder_img", "encoder_seg", "decoder_img"):
        chex.assert_trees_all_equal_shapes(g["params"][name], wide["params"][name])
    gen = jax.jit(lambda x: spec.generator().apply(g, x))
    a, b = blob(8, 8, 5), blob(20, 14, 6)
    out_ab, out_ba = gen(make_input([a, b, EMPTY])), gen(make_input([b, a, EMPTY]))
    np.testing.assert_allclose(out_ab[..., 3], out_ba[..., 4], atol=1e-4)
    np.testing.assert_array_equal(out_ab[0, ..., 5], EMPTY)


def test_a_mask_width_of_zero_is_the_papers_width_of_ngf():
    paper, spelled_out = ModelSpec(ngf=2, ndf=2, n_blocks=1), ModelSpec(ngf=2, ndf=2, n_blocks=1, ngf_mask=2)
    variables = init_networks(paper, jax.random.PRNGKey(0), H, W, 2)
    chex.assert_trees_all_equal_shapes(variables, init_networks(spelled_out, jax.random.PRNGKey(0), H, W, 2))
    x = make_input([blob(8, 8, 5), blob(20, 14, 6)])
    np.testing.assert_array_equal(
        paper.generator().apply(variables["G_A"], x), spelled_out.generator().apply(variables["G_A"], x)
    )


def test_discriminator_rejects_images_too_small_for_its_patches(tiny):
    _, _, _, disc = tiny
    with pytest.raises(ValueError, match="too small"):
        disc(jnp.zeros((1, 16, 16, 6)))


def test_model_spec_rejects_bad_values():
    with pytest.raises(ValueError, match="ngf"):
        ModelSpec(ngf=0)
    with pytest.raises(ValueError, match="model"):
        ModelSpec(model="unet")
    for ngf_mask in (-1, 257, "8", 2.0):
        with pytest.raises(ValueError, match=r"ngf_mask must be an integer in \[0, 256\]"):
            ModelSpec.from_dict({"ngf_mask": ngf_mask})


@pytest.mark.parametrize("upsample", ["bilinear", ["transpose"], None])
def test_a_spec_refuses_an_unknown_upsampling(upsample):
    with pytest.raises(ValueError, match="upsample must be one of"):
        ModelSpec.from_dict({"ngf": 2, "upsample": upsample})


def test_resize_conv_generators_have_their_own_parameters_and_translate_sets():
    spec = ModelSpec(ngf=2, ndf=2, n_blocks=1, upsample="resize_conv")
    networks = init_networks(spec, jax.random.PRNGKey(0), 32, 32, 2)
    kernel = networks["G_A"]["params"]["decoder_img"]["up_0"]["conv"]["kernel"]
    chex.assert_shape(kernel, (3, 3, 16, 8))  # a 3x3 conv, HWIO: the 8 ngf context to 2 x (2 ngf)
    x = jnp.concatenate([jnp.zeros((1, 16, 16, 3)), -jnp.ones((1, 16, 16, 2))], -1).at[0, 4:8, 4:8, 3].set(1)
    out = spec.generator().apply(networks["G_A"], x)
    chex.assert_shape(out, (1, 16, 16, 5))
    np.testing.assert_array_equal(out[..., 4], -1)  # the empty slot passes through


@pytest.mark.parametrize("upsample", ["transpose", "resize_conv"])
def test_native_convolutions_give_the_cpu_forms_numbers_and_gradients(monkeypatch, upsample):
    """A GPU or TPU takes XLA's own convolutions (convolution.convolution_forms): same networks, same numbers.

    In float64, so that the comparison is sharp (the forms differ only in summation order);
    ngf 8 so that the output layers run as tap products in the CPU forms; 32x24 so that the
    discriminator's classifier sees inputs smaller than its kernel.
    """
    spec = ModelSpec(ngf=8, ndf=4, n_blocks=1, upsample=upsample)
    variables = init_networks(spec, jax.random.PRNGKey(0), H, W, 2)
    with jax.enable_x64(True):
        as_f64 = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)
        x, spectral = as_f64(make_input([blob(8, 8, 5), blob(20, 14, 6)])), as_f64(variables["D_A"]["spectral"])
        params = as_f64({"G": variables["G_A"]["params"], "D": variables["D_A"]["params"]})

        def loss(params):
            fake = spec.generator().apply({"params": params["G"]}, x)
            logits = spec.discriminator().apply({"params": params["D"], "spectral": spectral}, fake)
            return jnp.sum(jnp.sin(fake)) + jnp.sum(logits**2)

        results = {}
        for forms in ("cpu", "native"):
            monkeypatch.setenv(convolution.CONVOLUTIONS_VARIABLE, forms)
            results[forms] = jax.jit(jax.value_and_grad(loss))(params)  # traced anew: the variable is read then
    (value, grads), (native_value, native_grads) = results["cpu"], results["native"]
    chex.assert_trees_all_equal_shapes_and_dtypes(native_grads, grads)
    chex.assert_type(value, jnp.float64)
    np.testing.assert_allclose(native_value, value, rtol=1e-12)
    scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(grads))
    for a, b in zip(jax.tree.leaves(native_grads), jax.tree.leaves(grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * scale)
