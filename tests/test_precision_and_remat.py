"""bfloat16 compute (ModelSpec.compute_dtype) and rematerialisation (ModelSpec.remat)."""

import dataclasses
import functools
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from instagan_jax import layers
from instagan_jax import train_step as ts
from instagan_jax.models import ModelSpec, init_networks
from instagan_jax.xla_options import compiler_options

# bfloat16 keeps 8 significant bits: each layer's output is rounded to about 0.4%, and the
# losses of one step, sums over a whole image, moved by less than this on the golden batch.
BFLOAT16_LOSS_RTOL = 0.03


def nhwc(x):
    return jnp.asarray(np.asarray(x).transpose(0, 2, 3, 1))


def test_one_bfloat16_step_keeps_the_losses_and_float32_state(converted, golden_dir):
    spec, nets = converted
    golden = np.load(golden_dir / "train_step.npz")
    cfg = ts.StepConfig(spec=dataclasses.replace(spec, compute_dtype="bfloat16"), ins_max=4, ins_per=2, pool_size=0)
    state = ts.create_state(cfg, jax.random.PRNGKey(0), 64, 48, networks=nets)
    batch = {k: nhwc(golden[k]) for k in ("image_A", "masks_A", "image_B", "masks_B")}
    step = jax.jit(functools.partial(ts.train_step, cfg), compiler_options=compiler_options())
    new_state, metrics = step(state, batch)
    for name in ts.LOSS_NAMES:  # chunk 0 runs on the reference's weights
        ours, ref = float(metrics[f"chunks/{name}"][0]), float(golden[f"loss/{name}"][0])
        assert ours == pytest.approx(ref, rel=BFLOAT16_LOSS_RTOL, abs=1e-4), name
        assert metrics[name].dtype == jnp.float32
    # parameters, moments and spectral vectors stay float32, and every parameter moved
    chex.assert_trees_all_equal_shapes_and_dtypes(new_state.params, state.params)
    chex.assert_trees_all_equal_shapes_and_dtypes(new_state.opt_g, state.opt_g)
    chex.assert_trees_all_equal_shapes_and_dtypes(new_state.spectral, state.spectral)
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new_state.params, state.params)
    assert all(jax.tree.leaves(moved))


def test_bfloat16_networks_compute_in_bfloat16_and_answer_in_float32():
    spec = ModelSpec(ngf=4, ndf=4, n_blocks=1, compute_dtype="bfloat16")
    nets = init_networks(spec, jax.random.PRNGKey(0), 32, 32, 2)
    x = jax.random.uniform(jax.random.PRNGKey(1), (1, 32, 32, 5), minval=-1, maxval=1)
    jaxpr = str(jax.make_jaxpr(lambda v, x: spec.generator().apply(v, x))(nets["G_A"], x))
    assert "conv_general_dilated" in jaxpr and "bf16[1,32,32,4]" in jaxpr  # the first layer's output
    out = jax.jit(spec.generator().apply)(nets["G_A"], x)
    exact = jax.jit(dataclasses.replace(spec, compute_dtype="float32").generator().apply)(nets["G_A"], x)
    chex.assert_type(out, jnp.float32)
    np.testing.assert_allclose(out, exact, atol=0.05)  # a tanh output, through a few bfloat16 layers
    assert float(jnp.abs(out - exact).max()) > 0  # and it did round


def _gradients(spec: ModelSpec, nets: dict, batch: dict) -> tuple:
    """Both networks' gradients and losses through the train step's own calls (ModelSpec.call)."""
    cfg = ts.StepConfig(spec=spec, ins_max=2, ins_per=2, pool_size=0)
    state = ts.create_state(cfg, jax.random.PRNGKey(0), 32, 32, networks=nets)
    carry, chunk, present = ts.initial_carry(batch), batch["masks_A"], jnp.ones((2,), bool)
    g_params = ts.generators(state.params)
    a_to_b = ts.BOTH_DIRECTIONS[0]
    g_grads, (g_losses, _, fake) = ts.direction_gradients(cfg, a_to_b, g_params, state, carry, chunk, 0, present)
    real = jnp.concatenate([batch["image_B"], batch["masks_B"]], axis=-1)

    def d_loss(params):
        apply = cfg.spec.call(cfg.spec.discriminator(), update_stats=True, mutable=["spectral"])
        logits, _ = apply({"params": params, "spectral": state.spectral[a_to_b.discriminator]}, real)
        fake_logits, _ = apply({"params": params, "spectral": state.spectral[a_to_b.discriminator]}, fake)
        return jnp.mean(jnp.square(logits - 1)) + jnp.mean(jnp.square(fake_logits))

    d_grads = jax.grad(d_loss)(state.params[a_to_b.discriminator])
    return g_grads, g_losses, d_grads


def test_remat_recomputes_without_changing_the_numbers():
    spec = ModelSpec(ngf=4, ndf=4, n_blocks=1)
    nets = init_networks(spec, jax.random.PRNGKey(0), 32, 32, 2)
    rng = np.random.default_rng(0)
    masks = np.where(rng.uniform(size=(2, 32, 32, 2)) > 0.7, 1.0, -1.0).astype(np.float32)
    batch = {"image_A": rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32), "masks_A": masks,
             "image_B": rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32), "masks_B": masks[::-1]}  # fmt: skip
    plain = jax.jit(functools.partial(_gradients, spec))(nets, batch)
    # jax's rematerialisation primitive (named checkpoint, or remat2 once differentiated)
    recomputes = lambda fn: re.search(r"\b(checkpoint|remat2?)\[", str(jax.make_jaxpr(fn)(nets, batch)))
    assert not recomputes(functools.partial(_gradients, spec))
    for remat in ("block", "network"):
        rematted = functools.partial(_gradients, dataclasses.replace(spec, remat=remat))
        assert recomputes(rematted), remat
        # the same numbers up to the rounding of a recomputation fused differently (the gradients
        # of biases that an instance norm follows are rounding noise, ~1e-8, either way)
        for ours, theirs in zip(jax.tree.leaves(jax.jit(rematted)(nets, batch)), jax.tree.leaves(plain), strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6, err_msg=remat)


def test_remat_and_compute_dtype_are_checked_choices():
    with pytest.raises(ValueError, match="compute_dtype"):
        ModelSpec(compute_dtype="float16")
    with pytest.raises(ValueError, match="remat"):
        ModelSpec(remat="everything")
    assert set(layers.REMAT) == {"none", "block", "network"}
