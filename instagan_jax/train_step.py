"""One training step of InstaGAN: the sequential mini-batch as a rolled loop over chunks.

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
and its pool untouched, and is not computed at all (``lax.cond``, as the reference's loop
skips it); a chunk empty in both directions changes nothing, and the loop ends after the
last chunk with an instance. Per-example emptiness is selected with ``jnp.where``: no host
sync, no data-dependent shape.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from instagan_jax import checks, domains, image_pool, losses, sequential
from instagan_jax import masks as masks_lib
from instagan_jax.models import IMAGE_CHANNELS, ModelSpec, init_networks

# The loss terms of a direction: its generator's (computed in generator_losses) and its
# discriminator's. A new loss is a term here and its computation in losses.py.
GENERATOR_TERMS = ("G", "cyc", "idt", "ctx")
LOSS_TERMS = ("D", *GENERATOR_TERMS)


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
    ema_decay: float = 0.0  # > 0: keep an exponential moving average of the generators (not in the paper)

    def __post_init__(self):
        checks.check_chunking(self.ins_max, self.ins_per)
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")

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
    ema: dict  # G_A, G_B: moving averages of their params, for evaluation and translation; {} if off


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
        opt_g=adam.init(generators(params)),
        opt_d={name: adam.init(params[name]) for name in ("D_A", "D_B")},
        pools={name: image_pool.create(cfg.pool_size, (height, width, channels)) for name in ("fake_A", "fake_B")},
        key=key,
        ema=jax.tree.map(jnp.copy, generators(params)) if cfg.ema_decay else {},  # own buffers: the state is donated
    )


def generators(params: dict) -> dict:
    return {name: params[name] for name in ("G_A", "G_B")}


def update_ema(cfg: StepConfig, ema: dict, params: dict, step: jax.Array) -> dict:
    """ema <- d ema + (1 - d) params, with d = min(ema_decay, (1 + step) / (10 + step)).

    The warm-up (as TensorFlow's ExponentialMovingAverage with num_updates) keeps the
    average from remembering the random init for thousands of steps in short runs.
    """
    step = step.astype(jnp.float32)
    d = jnp.minimum(cfg.ema_decay, (1.0 + step) / (10.0 + step))
    return jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema, generators(params))


@dataclasses.dataclass(frozen=True)
class Direction:
    """What one translation direction ("AtoB", "BtoA") uses in the step, in the reference's names."""

    source: str  # the domain translated ("A")
    target: str
    forward: str  # the generator translating source -> target
    backward: str  # its inverse, for the cycle and identity terms
    discriminator: str  # the discriminator judging fakes of the target
    pool: str  # the image pool of fakes of the target (fed to that discriminator)
    cycle_weight: str  # StepConfig field: lambda of the cycle term

    @classmethod
    def of(cls, name: str) -> Direction:
        """The direction ``name`` of domains.DIRECTIONS."""
        x, y = domains.source(name), domains.target(name)
        return cls(x, y, forward=domains.generator(name), backward=domains.generator(domains.inverse(name)),
                   discriminator=f"D_{x}", pool=f"fake_{y}", cycle_weight=f"lambda_{x.lower()}")  # fmt: skip

    def loss_names(self) -> dict[str, str]:
        """Term -> loss name; the reference calls G_B(real_A)'s identity term idt_B."""
        return {term: f"{term}_{self.target if term == 'idt' else self.source}" for term in LOSS_TERMS}


BOTH_DIRECTIONS = tuple(Direction.of(name) for name in domains.DIRECTIONS)
# Each loss in the reference's order (D_A, G_A, cyc_A, idt_A, ...), and the source domain of
# the direction whose chunk produces it (idt_B = |G_B(real_A) - real_A| belongs to A -> B).
LOSS_NAMES = tuple(f"{term}_{x}" for x in domains.DOMAINS for term in LOSS_TERMS)
LOSS_DIRECTION = {name: direction.source for direction in BOTH_DIRECTIONS for name in direction.loss_names().values()}


class _Discriminator(NamedTuple):
    """A discriminator's part of the train state."""

    params: dict
    opt_state: optax.OptState
    spectral: dict


def _adam_step(cfg: StepConfig, lr: jax.Array, params, grads, opt_state):
    updates, opt_state = _adam(cfg).update(grads, opt_state)
    return jax.tree.map(lambda w, u: w - lr * u, params, updates), opt_state


def _present(cfg: StepConfig, chunk: jax.Array) -> jax.Array:
    """(B,) does the example have an instance in this chunk? Always, for the CycleGAN baseline."""
    if not cfg.spec.uses_masks:
        return jnp.ones(chunk.shape[0], bool)
    return masks_lib.chunk_holds_instance(chunk)


def initial_carry(batch: dict) -> dict:
    """What chunk 0 sees: the real images, and no generated masks yet (every slot empty).

    Both keyed by the source domain: ``images["A"]`` is domain A's image as translated so far,
    ``generated_masks["A"]`` the masks its translation to B has generated so far."""
    return {
        "images": {x: batch[f"image_{x}"] for x in domains.DOMAINS},
        "generated_masks": {x: -jnp.ones_like(batch[f"masks_{x}"]) for x in domains.DOMAINS},
    }


def generator_losses(cfg: StepConfig, direction: Direction, g_params: dict, d_variables: dict, carry: dict, chunk,
                     k):  # fmt: skip
    """The generator terms of ``direction`` on chunk k, per example: (terms, D's spectral, fake).

    ``fake`` is the translated image with every mask generated so far (earlier chunks'
    stopped, this chunk's live in slots k*p .. k*p+p-1): what the discriminator judges.
    """
    generator = cfg.spec.call(cfg.spec.generator())
    forward = lambda v: generator({"params": g_params[direction.forward]}, v)
    backward = lambda v: generator({"params": g_params[direction.backward]}, v)
    lam = getattr(cfg, direction.cycle_weight)
    real = jnp.concatenate([carry["images"][direction.source], chunk], axis=-1)
    translated = forward(real)
    fake_image, fake_masks = translated[..., :IMAGE_CHANNELS], translated[..., IMAGE_CHANNELS:]
    generated = jax.lax.dynamic_update_slice_in_dim(
        carry["generated_masks"][direction.source], fake_masks, k * cfg.slots_per_chunk, axis=3
    )
    fake = jnp.concatenate([fake_image, generated], axis=-1)
    discriminator = cfg.spec.call(cfg.spec.discriminator(), update_stats=True, mutable=["spectral"])
    logits, mutated = discriminator(d_variables, fake)
    terms = {
        "G": losses.adversarial(logits, True, cfg.gan_loss),
        "cyc": losses.l1(backward(translated), real) * lam,
        "idt": losses.l1(backward(real), real) * lam * cfg.lambda_idt,
    }
    if cfg.spec.uses_masks:
        ctx = losses.context_preserving(carry["images"][direction.source], fake_image, chunk, fake_masks)
        terms["ctx"] = ctx * lam * cfg.lambda_ctx
    else:
        terms["ctx"] = jnp.zeros_like(terms["G"])
    return terms, mutated["spectral"], fake


def direction_gradients(cfg: StepConfig, direction: Direction, g_params: dict, state: TrainState, carry, chunk, k,
                        present):  # fmt: skip
    """The gradient of ``direction``'s generator losses on chunk k: (grads, ({loss name: value}, D's spectral, fake)).

    Computed only if some example of the batch has an instance of the direction's source in the chunk
    (``lax.cond`` around the forward and backward pass). Otherwise: zero gradient and
    losses, D's spectral state as it was and the image as it is, all that the full
    computation would have kept; so the step's cost follows the instances, as in the
    reference's loop, which skips a direction whose chunk is empty.
    """
    d_variables = {"params": state.params[direction.discriminator], "spectral": state.spectral[direction.discriminator]}
    names = direction.loss_names()

    def loss(g):
        terms, spectral, fake = generator_losses(cfg, direction, g, d_variables, carry, chunk, k)
        named = {names[term]: losses.masked_mean(value, present) for term, value in terms.items()}
        return sum(named.values()), (named, spectral, jax.lax.stop_gradient(fake))

    compute = lambda: jax.grad(loss, has_aux=True)(g_params)
    if not cfg.spec.uses_masks:  # CycleGAN: every example always takes part
        return compute()

    def skip():
        named = {names[term]: jnp.zeros((), jnp.float32) for term in GENERATOR_TERMS}
        x = direction.source
        image_so_far = jnp.concatenate([carry["images"][x], carry["generated_masks"][x]], axis=-1)
        return jax.tree.map(jnp.zeros_like, g_params), (named, d_variables["spectral"], image_so_far)

    return jax.lax.cond(present.any(), compute, skip)


def update_generators(cfg: StepConfig, lr, state: TrainState, carry: dict, chunks: dict, present: dict, k):
    """One Adam step on both generators with the summed gradients of both directions.

    Returns (new generator params, new opt_g, spectral states after the generators' D
    passes, {loss name: value}, {source domain: fake}). Nothing moves if no example of
    the batch has an instance in this chunk.
    """
    g_params = generators(state.params)
    spectral, named, fakes, grads = dict(state.spectral), {}, {}, []
    for direction in BOTH_DIRECTIONS:
        x = direction.source
        g, (direction_named, spectral[direction.discriminator], fakes[x]) = direction_gradients(
            cfg, direction, g_params, state, carry, chunks[x], k, present[x]
        )
        grads.append(g)
        named.update(direction_named)
    any_present = present["A"].any() | present["B"].any()
    new_g, opt_g = jax.lax.cond(
        any_present,
        lambda: _adam_step(cfg, lr, g_params, jax.tree.map(jnp.add, *grads), state.opt_g),
        lambda: (g_params, state.opt_g),
    )
    return new_g, opt_g, spectral, named, fakes


def update_discriminator(cfg: StepConfig, lr, direction: Direction, state: TrainState, spectral, real, fake, present,
                         key):  # fmt: skip
    """One Adam step on the direction's discriminator: real target image vs. a pooled fake.

    Returns (params, opt state, spectral state, pool, loss); all unchanged, and nothing
    computed (``lax.cond``), if no example has an instance of the source domain in this chunk.
    """
    name = direction.discriminator
    before = _Discriminator(state.params[name], state.opt_d[name], state.spectral[name])
    apply = cfg.spec.call(cfg.spec.discriminator(), update_stats=True, mutable=["spectral"])

    def loss(d_params, spectral_in, pooled):
        real_logits, s1 = apply({"params": d_params, "spectral": spectral_in}, real)
        fake_logits, s2 = apply({"params": d_params, "spectral": s1["spectral"]}, pooled)
        per_example = 0.5 * (
            losses.adversarial(real_logits, True, cfg.gan_loss) + losses.adversarial(fake_logits, False, cfg.gan_loss)
        )
        return losses.masked_mean(per_example, present), s2["spectral"]

    def update(spectral):
        pool, pooled = image_pool.query(state.pools[direction.pool], fake, present, key)
        (d_loss, new_spectral), grads = jax.value_and_grad(loss, has_aux=True)(before.params, spectral, pooled)
        return (*_adam_step(cfg, lr, before.params, grads, before.opt_state), new_spectral, pool, d_loss)

    skip = lambda spectral: (*before, state.pools[direction.pool], jnp.zeros((), jnp.float32))
    return jax.lax.cond(present.any(), update, skip, spectral)


def carry_on(carry: dict, direction: Direction, fake: jax.Array, present: jax.Array) -> dict:
    """The next chunk sees the translated image (where the example had an instance) and the masks so far."""
    x, keep = direction.source, present[:, None, None, None]
    images = dict(carry["images"], **{x: jnp.where(keep, fake[..., :IMAGE_CHANNELS], carry["images"][x])})
    generated = dict(carry["generated_masks"], **{x: fake[..., IMAGE_CHANNELS:]})
    return {"images": images, "generated_masks": generated}


def chunk_step(cfg: StepConfig, lr, state: TrainState, carry: dict, k, chunks: dict, batch: dict):
    """One G update and one D update per direction on chunk k.

    ``chunks``: {"A", "B": (B, H, W, ins_per) masks of this chunk}; ``batch``: the step's
    batch view (masks cut to the chunks). Returns (state, carry, {loss name: value},
    {domain: whether any example had an instance}).
    """
    present = {x: _present(cfg, chunks[x]) for x in "AB"}
    g_params, opt_g, spectral, named, fakes = update_generators(cfg, lr, state, carry, chunks, present, k)
    params, opt_d, pools = dict(state.params, **g_params), dict(state.opt_d), dict(state.pools)
    key, *pool_keys = jax.random.split(state.key, 3)
    for direction, pool_key in zip(BOTH_DIRECTIONS, pool_keys, strict=True):
        x, y, name = direction.source, direction.target, direction.discriminator
        real = jnp.concatenate([batch[f"image_{y}"], batch[f"masks_{y}"]], axis=-1)
        (params[name], opt_d[name], spectral[name], pools[direction.pool], named[direction.loss_names()["D"]]) = (
            update_discriminator(cfg, lr, direction, state, spectral[name], real, fakes[x], present[x], pool_key)
        )
        carry = carry_on(carry, direction, fakes[x], present[x])
    # Everything above already kept its old value where its direction had no instance; an
    # all-empty chunk must not advance the random key either.
    any_present = present["A"].any() | present["B"].any()
    key = jnp.where(any_present, key, state.key)
    state = state.replace(params=params, spectral=spectral, opt_g=opt_g, opt_d=opt_d, pools=pools, key=key)
    return state, carry, {name: named[name] for name in LOSS_NAMES}, {x: present[x].any() for x in "AB"}


def batch_view(cfg: StepConfig, batch: dict) -> dict:
    """The step's view of a batch: images, and masks cut to the slots the chunks cover."""
    cut = cfg.num_chunks * cfg.slots_per_chunk
    return {f"{kind}_{x}": batch[f"{kind}_{x}"][..., :cut] if kind == "masks" else batch[f"{kind}_{x}"]
            for kind in ("image", "masks") for x in "AB"}  # fmt: skip


def train_step(cfg: StepConfig, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    """One outer step over a batch {image_A, masks_A, image_B, masks_B}: scan over its chunks.

    Returns the new state and metrics: each loss averaged over the chunks that had an
    instance, the per-chunk losses ("chunks/<name>", shape (num_chunks,)) and the learning rate.
    """
    lr = cfg.learning_rate_at(state.step)
    p = cfg.slots_per_chunk
    view = batch_view(cfg, batch)
    chunks = {
        x: masks_lib.split_chunks(view[f"masks_{x}"], p) if p else jnp.zeros((1, *view[f"masks_{x}"].shape[:3], 0))
        for x in "AB"
    }

    def body(scan_carry, xs):
        st, c = scan_carry
        k, chunk = xs
        st, c, chunk_losses, active = chunk_step(cfg, lr, st, c, k, chunk, view)
        return (st, c), (chunk_losses, active)

    xs = (jnp.arange(cfg.num_chunks), chunks)
    busy, skipped = None, None
    if cfg.spec.uses_masks:  # the loop ends after the last chunk with an instance (an empty one changes nothing)
        busy = masks_lib.busy_chunks(chunks["A"]) | masks_lib.busy_chunks(chunks["B"])
        nothing = jnp.zeros(cfg.num_chunks)
        skipped = ({name: nothing for name in LOSS_NAMES}, {x: nothing.astype(bool) for x in "AB"})
    (state, _), (chunk_losses, active) = sequential.scan_chunks(
        body, (state, initial_carry(view)), xs, cfg.scan_unroll, busy, skipped
    )
    metrics = {}
    for name, values in chunk_losses.items():
        weights = active[LOSS_DIRECTION[name]].astype(jnp.float32)  # chunks where the loss's direction ran
        metrics[name] = jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)
    metrics.update({f"chunks/{name}": v for name, v in chunk_losses.items()})
    metrics["learning_rate"] = lr
    if cfg.ema_decay:
        state = state.replace(ema=update_ema(cfg, state.ema, state.params, state.step))
    return state.replace(step=state.step + 1), metrics
