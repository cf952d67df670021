"""The image pool of Shrivastava et al. as functional state (CycleGAN's 50-image history).

While the pool fills, a query returns the new fake and stores it; once full, each fake is,
with probability 1/2, swapped for a random stored one (which is returned) or returned as is.
Examples that do not take part (``active`` False) neither enter the pool nor draw from it.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class ImagePool:
    images: jax.Array  # (size, H, W, C)
    count: jax.Array  # () int32, how many slots are filled

    @property
    def size(self) -> int:
        return self.images.shape[0]


def create(size: int, image_shape: tuple[int, ...]) -> ImagePool:
    return ImagePool(jnp.zeros((size, *image_shape), jnp.float32), jnp.zeros((), jnp.int32))


def query(pool: ImagePool, fakes: jax.Array, active: jax.Array, key: jax.Array) -> tuple[ImagePool, jax.Array]:
    """Returns (new pool, images for the discriminator), one example after the other."""
    if pool.size == 0:
        return pool, fakes

    def one(carry, inputs):
        images, count = carry
        fake, is_active, example_key = inputs
        swap_key, index_key = jax.random.split(example_key)
        filling = count < pool.size
        swap = (~filling) & jax.random.bernoulli(swap_key, 0.5)
        index = jnp.where(filling, count, jax.random.randint(index_key, (), 0, pool.size))
        out = jnp.where(swap & is_active, images[index], fake)
        store = is_active & (filling | swap)
        images = images.at[index].set(jnp.where(store, fake, images[index]))
        return (images, count + (is_active & filling).astype(jnp.int32)), out

    keys = jax.random.split(key, fakes.shape[0])
    (images, count), out = jax.lax.scan(one, (pool.images, pool.count), (fakes, active, keys))
    return ImagePool(images, count), out
