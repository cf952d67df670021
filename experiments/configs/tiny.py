"""Tiny: a few steps on 32x32 shapes with 2-wide networks, for tests and smoke runs (seconds)."""

from configs import default


def get_config():
    config = default.get_config()
    config.load_size = (36, 36)
    config.fine_size = (32, 32)
    config.shapes_size = 40
    config.shapes_num_train = 16
    config.shapes_num_test = 4
    config.batch_size = 2
    config.ngf = 2
    config.ngf_mask = 1  # narrower than ngf, as in default.py
    config.mask_decoder_width = 2  # narrower than its inputs / 4 (4): the tests train a set width
    config.ndf = 2
    config.n_blocks = 1
    config.ins_per = 2  # two chunks of the four slots: the tests run the sequential mini-batch
    config.ema_decay = 0.0  # the trained weights only; tests turn the average on where they test it
    config.pool_size = 4
    config.num_train_steps = 4
    config.niter = 2
    config.niter_decay = 2
    config.log_every_steps = 2
    config.image_every_steps = 2
    config.checkpoint_every_steps = 2
    return config
