"""One training step of InstaGAN: the sequential mini-batch as a ``lax.scan`` over chunks.

Per chunk k (ins_per mask slots of each example), as the reference's optimize_parameters:
  1. G_A and G_B see the current images (translated by chunks < k, gradient stopped) and
     the chunk's masks; one Adam step on both generators with
     GAN + cycle + identity + context-preserving losses of both directions;
  2. one Adam step on each discriminator whose direction had an instance in the chunk,
     on the real image with all its masks vs. a pooled fake (the translated image with the
     masks generated so far: earlier chunks' stopped, this chunk's, later ones empty);
  3. the translated images and generated masks become the next chunk's inputs.
Emptiness is per example: an example whose chunk is empty adds no loss. A direction with no
instance in the whole batch leaves its discriminator, its spectral state, its Adam moments
and its pool untouched; a chunk empty in both directions changes nothing at all. All of
this is selected with ``jnp.where``: no host sync, no data-dependent shape.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp
import optax

from instagan_jax import image_pool, losses, sequential
from instagan_jax import masks as masks_lib
from instagan_jax.models import IMAGE_CHANNELS, ModelSpec, init_networks

LOSS_NAMES = ("D_A", "G_A", "cyc_A", "idt_A", "ctx_A", "D_B", "G_B", "cyc_B", "idt_B", "ctx_B")
# which direction's chunk produces each loss (idt_B = |G_B(real_A) - real_A| belongs to A -> B)
LOSS_DIRECTION = {name: ("A" if name in ("D_A", "G_A", "cyc_A", "idt_B", "ctx_A") else "B") for name in LOSS_NAMES}


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Hyper-parameters of the step, bound once at the jit call site (hashable, static)."""

    spec: ModelSpec = ModelSpec()
    ins_max: int = 4
    ins_per: int = 2
    lambda_a: float = 10.0
    lambda_b: float = 10.0
    lambda_idt: float = 1.0
    lambda_ctx: float = 1.0
    gan_loss: str = "lsgan"
    learning_rate: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    niter: int = 100_000  # steps at constant learning rate
    niter_decay: int = 100_000  # then steps of linear decay to 0
    pool_size: int = 50
    scan_unroll: bool = False  # trace the chunk scan once per chunk (see sequential.scan_chunks)

    def __post_init__(self):
        if self.ins_per <= 0 or self.ins_max <= 0 or self.ins_max % self.ins_per:
            raise ValueError(f"ins_max ({self.ins_max}) must be a positive multiple of ins_per ({self.ins_per})")

    @property
    def num_chunks(self) -> int:
        return self.ins_max // self.ins_per if self.spec.uses_masks else 1

    @property
    def slots_per_chunk(self) -> int:
        return self.ins_per if self.spec.uses_masks else 0

    def learning_rate_at(self, step: jax.Array) -> jax.Array:
        """Constant for niter steps, then linear to 0 over niter_decay steps (the reference's 'lambda')."""
        decay = jnp.maximum(0.0, step.astype(jnp.float32) - self.niter) / float(self.niter_decay + 1)
        return self.learning_rate * jnp.maximum(0.0, 1.0 - decay)


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # outer steps done
    params: dict  # G_A, G_B, D_A, D_B
    spectral: dict  # D_A, D_B power-iteration vectors
    opt_g: optax.OptState  # one Adam over both generators, as the reference
    opt_d: dict  # D_A, D_B: their own Adam states, stepped only when their direction is
    pools: dict  # "fake_A" (fed to D_B), "fake_B" (fed to D_A)
    key: jax.Array


def _adam(cfg: StepConfig) -> optax.GradientTransformation:
    return optax.scale_by_adam(b1=cfg.beta1, b2=cfg.beta2, eps=1e-8)


def create_state(cfg: StepConfig, key: jax.Array, height: int, width: int, networks: dict | None = None) -> TrainState:
    """A fresh state; ``networks`` (e.g. a converted authors' checkpoint) replaces the init."""
    init_key, key = jax.random.split(key)
    networks = networks or init_networks(cfg.spec, init_key, height, width, max(cfg.slots_per_chunk, 1))
    params = {name: variables["params"] for name, variables in networks.items()}
    spectral = {name: networks[name]["spectral"] for name in ("D_A", "D_B")}
    adam = _adam(cfg)
    channels = IMAGE_CHANNELS + (cfg.ins_max if cfg.spec.uses_masks else 0)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        spectral=spectral,
        opt_g=adam.init({"G_A": params["G_A"], "G_B": params["G_B"]}),
        opt_d={name: adam.init(params[name]) for name in ("D_A", "D_B")},
        pools={name: image_pool.create(cfg.pool_size, (height, width, channels)) for name in ("fake_A", "fake_B")},
        key=key,
    )


def _select(pred: jax.Array, new, old):
    return jax.tree.map(lambda n, o: jnp.where(pred, n, o), new, old)


def _present(cfg: StepConfig, chunk: jax.Array) -> jax.Array:
    """(B,) does the example have an instance in this chunk? Always, for the CycleGAN baseline."""
    if not cfg.spec.uses_masks:
        return jnp.ones(chunk.shape[0], bool)
    return jnp.any(masks_lib.slot_validity(chunk), axis=-1)


def _chunk_step(
    cfg: StepConfig, lr: jax.Array, state: TrainState, carry: dict, k: jax.Array, chunks: dict, batch: dict
):
    """One G update and one D update on chunk k; returns (state, carry, losses)."""
    generator, discriminator = cfg.spec.generator(), cfg.spec.discriminator()
    p = cfg.slots_per_chunk
    present = {"A": _present(cfg, chunks["A"]), "B": _present(cfg, chunks["B"])}
    # direction X -> Y: G translating X, its inverse, the D judging Y, the masks generated so far
    directions = {"A": ("G_A", "G_B", "D_A", "fake_B", "lambda_a"), "B": ("G_B", "G_A", "D_B", "fake_A", "lambda_b")}

    def generator_loss(g_params):
        out, spectral = {}, dict(state.spectral)
        for x, (g_fwd, g_bwd, d_name, fake_name, lam_name) in directions.items():
            lam = getattr(cfg, lam_name)
            forward = lambda v, name=g_fwd: generator.apply({"params": g_params[name]}, v)
            backward = lambda v, name=g_bwd: generator.apply({"params": g_params[name]}, v)
            real = jnp.concatenate([carry[f"image_{x}"], chunks[x]], axis=-1)
            fake = forward(real)
            rec = backward(fake)
            fake_image, fake_masks = fake[..., :IMAGE_CHANNELS], fake[..., IMAGE_CHANNELS:]
            # this chunk's live masks into slots k*p .. k*p+p-1, earlier chunks' stay stopped
            generated = jax.lax.dynamic_update_slice_in_dim(carry[f"masks_{fake_name}"], fake_masks, k * p, axis=3)
            fake_all = jnp.concatenate([fake_image, generated], axis=-1)
            logits, new_spec = discriminator.apply(
                {"params": state.params[d_name], "spectral": spectral[d_name]},
                fake_all,
                update_stats=True,
                mutable=["spectral"],
            )
            spectral[d_name] = new_spec["spectral"]
            terms = {
                "G": losses.adversarial(logits, True, cfg.gan_loss),
                "cyc": losses.l1(rec, real) * lam,
                "idt": losses.l1(backward(real), real) * lam * cfg.lambda_idt,
            }
            if cfg.spec.uses_masks:
                ctx = losses.context_preserving(carry[f"image_{x}"], fake_image, chunks[x], fake_masks)
                terms["ctx"] = ctx * lam * cfg.lambda_ctx
            else:
                terms["ctx"] = jnp.zeros_like(terms["G"])
            y = "B" if x == "A" else "A"
            # the reference calls G_B(real_A)'s identity term idt_B, and G_A(real_B)'s idt_A
            names = {"G": f"G_{x}", "cyc": f"cyc_{x}", "idt": f"idt_{y}", "ctx": f"ctx_{x}"}
            for term, value in terms.items():
                out[names[term]] = losses.masked_mean(value, present[x])
            out[f"_fake_all_{x}"] = jax.lax.stop_gradient(fake_all)
        total = sum(v for name, v in out.items() if not name.startswith("_"))
        return total, (out, spectral)

    g_params = {"G_A": state.params["G_A"], "G_B": state.params["G_B"]}
    grads, (terms, spectral) = jax.grad(generator_loss, has_aux=True)(g_params)
    updates, opt_g = _adam(cfg).update(grads, state.opt_g)
    new_g = jax.tree.map(lambda w, u: w - lr * u, g_params, updates)
    any_present = jnp.any(present["A"]) | jnp.any(present["B"])
    g_params, opt_g = _select(any_present, (new_g, opt_g), (g_params, state.opt_g))

    params, opt_d, pools = dict(state.params, **g_params), dict(state.opt_d), dict(state.pools)
    key, *pool_keys = jax.random.split(state.key, 3)
    for (x, (_, _, d_name, fake_name, _)), pool_key in zip(directions.items(), pool_keys, strict=True):
        y = "B" if x == "A" else "A"
        pool, pooled = image_pool.query(pools[fake_name], terms[f"_fake_all_{x}"], present[x], pool_key)
        real = jnp.concatenate([batch[f"image_{y}"], batch[f"masks_{y}"][..., : cfg.num_chunks * p]], axis=-1)

        def discriminator_loss(d_params, spectral_in, real=real, pooled=pooled, x=x):
            apply = functools.partial(discriminator.apply, update_stats=True, mutable=["spectral"])
            real_logits, s1 = apply({"params": d_params, "spectral": spectral_in}, real)
            fake_logits, s2 = apply({"params": d_params, "spectral": s1["spectral"]}, pooled)
            per_example = 0.5 * (
                losses.adversarial(real_logits, True, cfg.gan_loss)
                + losses.adversarial(fake_logits, False, cfg.gan_loss)
            )
            return losses.masked_mean(per_example, present[x]), s2["spectral"]

        (d_loss, d_spectral), d_grads = jax.value_and_grad(discriminator_loss, has_aux=True)(
            params[d_name], spectral[d_name]
        )
        d_updates, d_opt = _adam(cfg).update(d_grads, opt_d[d_name])
        new_d = jax.tree.map(lambda w, u: w - lr * u, params[d_name], d_updates)
        # no instance of this direction in the whole batch: D, its state and its pool stay as they were
        active = jnp.any(present[x])
        params[d_name], opt_d[d_name], spectral[d_name], pools[fake_name] = _select(
            active,
            (new_d, d_opt, d_spectral, pool),
            (state.params[d_name], state.opt_d[d_name], state.spectral[d_name], state.pools[fake_name]),
        )
        terms[f"D_{x}"] = d_loss
        # translated image and generated masks carry on to the next chunk (per example)
        fake_all = terms[f"_fake_all_{x}"]
        carry[f"image_{x}"] = jnp.where(
            present[x][:, None, None, None], fake_all[..., :IMAGE_CHANNELS], carry[f"image_{x}"]
        )
        carry[f"masks_{fake_name}"] = fake_all[..., IMAGE_CHANNELS:]

    new_state = state.replace(params=params, spectral=spectral, opt_g=opt_g, opt_d=opt_d, pools=pools, key=key)
    new_state = _select(any_present, new_state, state)  # an all-empty chunk changes nothing, not even the key
    chunk_losses = {name: terms[name] for name in LOSS_NAMES}
    return new_state, carry, chunk_losses, {x: jnp.any(present[x]) for x in "AB"}


def train_step(cfg: StepConfig, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    """One outer step over a batch {image_a, masks_a, image_b, masks_b}: scan over its chunks.

    Returns the new state and metrics: each loss averaged over the chunks that had an
    instance, the per-chunk losses ("chunks/<name>", shape (num_chunks,)) and the learning rate.
    """
    lr = cfg.learning_rate_at(state.step)
    p = cfg.slots_per_chunk
    masks = {x: batch[f"masks_{x.lower()}"][..., : cfg.num_chunks * p] for x in "AB"}
    inputs = {
        "k": jnp.arange(cfg.num_chunks),
        "A": masks_lib.split_chunks(masks["A"], p) if p else jnp.zeros((1, *masks["A"].shape[:3], 0)),
        "B": masks_lib.split_chunks(masks["B"], p) if p else jnp.zeros((1, *masks["B"].shape[:3], 0)),
    }
    named = {"image_A": batch["image_a"], "image_B": batch["image_b"], "masks_A": masks["A"], "masks_B": masks["B"]}
    carry = {
        "image_A": named["image_A"],
        "image_B": named["image_B"],
        "masks_fake_B": -jnp.ones_like(masks["A"]),  # masks G_A has generated so far
        "masks_fake_A": -jnp.ones_like(masks["B"]),
    }
    batch_view = {
        "image_A": named["image_A"],
        "image_B": named["image_B"],
        "masks_A": masks["A"],
        "masks_B": masks["B"],
    }

    def body(scan_carry, chunk):
        st, c = scan_carry
        st, c, chunk_losses, active = _chunk_step(
            cfg, lr, st, c, chunk["k"], {"A": chunk["A"], "B": chunk["B"]}, batch_view
        )
        return (st, c), (chunk_losses, active)

    (state, _), (chunk_losses, active) = sequential.scan_chunks(body, (state, carry), inputs, cfg.scan_unroll)
    metrics = {}
    for name, values in chunk_losses.items():
        weights = active[LOSS_DIRECTION[name]].astype(jnp.float32)  # chunks where the loss's direction ran
        metrics[name] = jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)
    metrics.update({f"chunks/{name}": v for name, v in chunk_losses.items()})
    metrics["learning_rate"] = lr
    return state.replace(step=state.step + 1), metrics


def make_train_step(cfg: StepConfig):
    """The jitted step, state donated: ``state, metrics = step(state, batch)``."""
    return jax.jit(functools.partial(train_step, cfg), donate_argnums=(0,))
