"""The tf.data pipeline: fixed shapes, sort and pad, determinism, resume, shards, eager == graph."""

import chex
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from instagan_jax import input_pipeline
from instagan_jax.datasets import builders

tf.config.set_visible_devices([], "GPU")


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    config = builders.ShapesConfig(name="pipe", size=40, num_train=12, num_test=3, max_instances=6)
    builder = builders.prepare("shapes", str(tmp_path_factory.mktemp("tfds")), shapes=config)
    return {x: input_pipeline.read_split(builder, f"train{x}") for x in "AB"}


def make(splits, **kwargs):
    args = dict(batch_size=4, load_size=(44, 40), fine_size=(32, 32), ins_max=4, seed=0)
    args.update(kwargs)
    return input_pipeline.make_dataset(splits["A"], splits["B"], **args)


def test_batches_have_fixed_shapes_and_ranges(splits):
    batch = next(make(splits).as_numpy_iterator())
    chex.assert_shape([batch["image_A"], batch["image_B"]], (4, 32, 32, 3))
    chex.assert_shape([batch["masks_A"], batch["masks_B"]], (4, 32, 32, 4))
    chex.assert_shape(batch["count_A"], (4,))
    for key in ("image_A", "masks_A", "image_B", "masks_B"):
        assert batch[key].dtype == np.float32 and batch[key].min() >= -1 and batch[key].max() <= 1
    areas = (batch["masks_A"] + 1).mean(axis=(1, 2))
    assert np.all(np.diff(areas, axis=-1) <= 1e-6)  # largest first, empty slots last
    np.testing.assert_array_equal(batch["count_A"], (batch["masks_A"] > -1).any(axis=(1, 2)).sum(-1))


def test_same_seed_same_batches_and_resume_from_a_position(splits):
    it = make(splits).as_numpy_iterator()
    first, second, third = next(it), next(it), next(it)
    again = next(make(splits).as_numpy_iterator())
    resumed = next(make(splits, start_position=8).as_numpy_iterator())
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
        np.testing.assert_array_equal(third[key], resumed[key])
    assert not np.array_equal(first["image_A"], second["image_A"])
    other_seed = next(make(splits, seed=1).as_numpy_iterator())
    assert not np.array_equal(first["image_A"], other_seed["image_A"])


def test_binary_masks_are_the_soft_masks_thresholded_at_half(splits):
    soft, binary = (next(make(splits, binary_masks=b).as_numpy_iterator()) for b in (False, True))
    assert np.any((soft["masks_A"] > -1) & (soft["masks_A"] < 1))  # the resize leaves soft edges
    for x in "AB":
        np.testing.assert_array_equal(binary[f"image_{x}"], soft[f"image_{x}"])
        assert set(np.unique(binary[f"masks_{x}"])) == {-1.0, 1.0}
        thresholded = np.where(soft[f"masks_{x}"] > 0, 1.0, -1.0).astype(np.float32)
        for ours, theirs in zip(binary[f"masks_{x}"], thresholded, strict=True):
            # the same slots; their order can differ where thresholding changes which is larger
            assert sorted(m.tobytes() for m in np.moveaxis(ours, -1, 0)) == sorted(
                m.tobytes() for m in np.moveaxis(theirs, -1, 0)
            )


def test_decoding_once_gives_the_stream_of_decoding_every_example(splits):
    cached, fresh = (make(splits, decode_once=d, set_order="random").as_numpy_iterator() for d in (True, False))
    for _ in range(4):  # 16 examples: past one epoch of the 12-image split
        a, b = next(cached), next(fresh)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_process_shards_are_disjoint_and_cover_the_global_batch(splits):
    whole = next(make(splits, batch_size=4).as_numpy_iterator())
    shards = [next(make(splits, batch_size=2, process_index=p, process_count=2).as_numpy_iterator()) for p in (0, 1)]
    ids = [list(s["id_A"]) for s in shards]
    assert not set(ids[0]) & set(ids[1])
    # process p holds examples p, p + 2 of the global stream
    np.testing.assert_array_equal(shards[0]["image_A"], whole["image_A"][0::2])
    np.testing.assert_array_equal(shards[1]["image_A"], whole["image_A"][1::2])


def test_every_a_is_seen_once_per_epoch(splits):
    ids = []
    for batch in make(splits, batch_size=4).take(3).as_numpy_iterator():  # 12 = one epoch of A
        ids += list(batch["id_A"])
    assert len(set(ids)) == 12


def test_evaluation_stream_is_ordered_and_finite(splits):
    batches = list(make(splits, load_size=(32, 32), train=False).as_numpy_iterator())
    assert sum(len(b["id_A"]) for b in batches) == 12
    assert list(batches[0]["id_A"]) == sorted(batches[0]["id_A"])
    with pytest.raises(ValueError, match="larger than load_size"):
        make(splits, fine_size=(48, 48))


def test_preprocessing_is_the_same_eagerly_and_inside_tf_data(splits):
    kwargs = dict(load_size=(44, 40), fine_size=(32, 32), flip=True, ins_max=4, set_order="decreasing")
    seed = tf.constant([0, 5], tf.int64)
    eager = input_pipeline.preprocess(splits["A"].images[3], splits["A"].masks[3], seed, **kwargs)
    ds = tf.data.Dataset.from_tensors(3).map(
        lambda i: input_pipeline.preprocess(splits["A"].images[i], splits["A"].masks[i], seed, **kwargs)
    )
    graph = next(iter(ds))
    for key in eager:
        np.testing.assert_allclose(eager[key].numpy(), graph[key].numpy(), atol=1e-6)


@st.composite
def mask_sets(draw):
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    n = draw(st.integers(0, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    masks = -np.ones((h, w, n), np.float32)
    for k in range(n):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)  # boxes touching the borders included
        masks[y0 : rng.integers(y0, h + 1), x0 : rng.integers(x0, w + 1), k] = 1
    return masks


@settings(max_examples=40, deadline=None)
@given(masks=mask_sets(), ins_max=st.integers(1, 8), order=st.sampled_from(["decreasing", "random"]))
def test_order_and_pad_properties(masks, ins_max, order):
    out = input_pipeline.order_and_pad(tf.constant(masks), ins_max, order, tf.constant([1, 2], tf.int64)).numpy()
    assert out.shape == (*masks.shape[:2], ins_max)
    assert np.isfinite(out).all() and out.min() >= -1 and out.max() <= 1
    areas_in = np.sort((masks + 1).sum(axis=(0, 1)))[::-1][:ins_max]
    areas_out = (out + 1).sum(axis=(0, 1))
    np.testing.assert_allclose(np.sort(areas_out)[::-1], np.pad(areas_in, (0, ins_max - len(areas_in))))
    valid = areas_out > 0
    assert not np.any(valid[1:] & ~valid[:-1])  # instances first, then empty slots
    if order == "decreasing":
        assert np.all(np.diff(areas_out) <= 0)
