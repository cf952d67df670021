"""The image pool: filling, the 1/2 swap once full, and examples that do not take part."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from instagan_jax import image_pool

SHAPE = (4, 4, 2)


def fakes(values):
    return jnp.stack([jnp.full(SHAPE, v, jnp.float32) for v in values])


def stored_values(pool):
    return sorted(float(image[0, 0, 0]) for image in pool.images[: int(pool.count)])


def test_a_filling_pool_stores_and_returns_the_new_fakes():
    pool = image_pool.create(3, SHAPE)
    chex.assert_shape(pool.images, (3, *SHAPE))
    pool, out = image_pool.query(pool, fakes([1, 2]), jnp.array([True, True]), jax.random.PRNGKey(0))
    np.testing.assert_array_equal(out, fakes([1, 2]))
    assert int(pool.count) == 2 and stored_values(pool) == [1.0, 2.0]


def test_examples_that_do_not_take_part_neither_enter_nor_draw():
    pool = image_pool.create(2, SHAPE)
    pool, _ = image_pool.query(pool, fakes([1, 2]), jnp.array([True, True]), jax.random.PRNGKey(0))  # full
    for seed in range(20):
        new, out = image_pool.query(pool, fakes([7, 8]), jnp.array([False, False]), jax.random.PRNGKey(seed))
        np.testing.assert_array_equal(out, fakes([7, 8]))
        chex.assert_trees_all_equal(new, pool)
    pool = image_pool.create(2, SHAPE)
    pool, out = image_pool.query(pool, fakes([5, 6]), jnp.array([False, True]), jax.random.PRNGKey(1))
    assert int(pool.count) == 1 and stored_values(pool) == [6.0]


def test_a_full_pool_swaps_half_of_the_time_and_keeps_every_image_somewhere():
    pool = image_pool.create(4, SHAPE)
    pool, _ = image_pool.query(pool, fakes([1, 2, 3, 4]), jnp.ones(4, bool), jax.random.PRNGKey(0))
    query = jax.jit(image_pool.query)
    swapped = 0
    for seed in range(200):
        new, out = query(pool, fakes([9]), jnp.array([True]), jax.random.PRNGKey(seed))
        returned = float(out[0, 0, 0, 0])
        if returned == 9.0:  # kept: the pool is unchanged
            assert stored_values(new) == stored_values(pool)
        else:  # swapped: an old image comes out and the new fake takes its slot
            swapped += 1
            assert returned in stored_values(pool)
            assert sorted([*stored_values(new), returned]) == sorted([*stored_values(pool), 9.0])
    assert 70 <= swapped <= 130  # Binomial(200, 1/2): outside this with probability < 1e-4


def test_a_pool_of_size_zero_passes_fakes_through():
    pool = image_pool.create(0, SHAPE)
    new, out = image_pool.query(pool, fakes([3]), jnp.array([True]), jax.random.PRNGKey(0))
    np.testing.assert_array_equal(out, fakes([3]))
    assert new.size == 0
