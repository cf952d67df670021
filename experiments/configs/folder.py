"""Any dataset in the authors' layout (trainA/, trainA_seg/, trainB/, ...), paper-sized networks.

    python experiments/train.py --workdir runs/mydata --config experiments/configs/folder.py \
        --config.dataroot=datasets/mydata --config.load_size='(220, 220)' --config.fine_size='(200, 200)'
"""

from configs import default


def get_config():
    config = default.get_config()
    config.dataset = "folder"
    config.dataroot = ""  # required
    config.load_size = (220, 220)
    config.fine_size = (200, 200)
    config.batch_size = 1
    config.ngf = 64
    config.ngf_mask = 0  # the mask encoder as wide as ngf: the paper's (the authors' checkpoints)
    config.mask_decoder_width = 0  # the mask decoder's width from its inputs: the paper's
    config.ndf = 64
    config.n_blocks = 9
    config.n_layers_d = 3
    config.upsample = "transpose"  # the paper's networks
    config.binary_masks = False  # the resize's soft mask edges, as the authors' data loader leaves them
    config.ema_decay = 0.0
    config.learning_rate = 2e-4
    config.ins_max = 4
    config.ins_per = 2
    config.num_train_steps = 200_000
    config.niter = 100_000
    config.niter_decay = 100_000
    config.log_every_steps = 100
    config.image_every_steps = 1000
    config.checkpoint_every_steps = 2000
    return config
