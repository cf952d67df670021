"""The instance masker on the shapes set (discs and squares, both domains): minutes on a laptop CPU.

    python experiments/train_masker.py --workdir runs/shapes_masker

Any dataset of ours works the same way (--config.dataset=folder --config.dataroot=...).
"""

import ml_collections

from configs import default


def get_config():
    config = default.get_config()
    config.binary_masks = False  # the masker learns the resize's soft edges (as measured: docs/masks.md)
    config.ins_max = 8  # mask slots read per photo: the masker learns from all of its instances
    config.batch_size = 8  # per domain: 16 photos a step
    config.learning_rate = 2e-3  # Adam, cosine decay to 0
    config.num_train_steps = 1200
    config.log_every_steps = 50
    config.image_every_steps = 300
    config.checkpoint_every_steps = 300
    config.masker = ml_collections.ConfigDict(
        {
            "width": 16,
            "n_blocks": 3,
            "ins_max": 8,
            "sigma": 2.0,
            "centre_threshold": 0.2,
            "peak_window": 5,
            "compute_dtype": "float32",
        }  # fmt: skip
    )
    return config
