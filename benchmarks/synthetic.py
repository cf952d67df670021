"""The benchmarks' synthetic batch (numpy only, so the PyTorch reference can use it without jax)."""

import numpy as np


def synthetic_batch(batch_size: int, size: int, ins_max: int, instances: int | None = None, seed: int = 0) -> dict:
    """The first ``instances`` mask slots (default: all) of every example hold a disc. NHWC, in [-1, 1].

    With every slot filled every chunk does full work; with fewer, the chunks past the
    instances are empty, as in real photos with fewer instances than ins_max.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    masks = -np.ones((batch_size, size, size, ins_max), np.float32)
    for b in range(batch_size):
        for i in range(ins_max if instances is None else instances):
            cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(size / 10, size / 4)
            masks[b, ..., i] = np.where((y - cy) ** 2 + (x - cx) ** 2 <= r * r, 1.0, -1.0)
    image = lambda: rng.uniform(-1, 1, (batch_size, size, size, 3)).astype(np.float32)
    return {"image_A": image(), "masks_A": masks, "image_B": image(), "masks_B": masks[::-1].copy()}
