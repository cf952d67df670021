r"""Default: InstaGAN on the procedural shapes set (discs <-> squares), sized for a laptop CPU.

    python experiments/train.py --workdir runs/shapes

Needs no data: the shapes set is generated (seconds) on the first run. A 2-core CPU
runs about 1.9-7 steps/s at this size, depending on the machine (32x32, batch 4, ngf 16
with a mask encoder of width 8, 3 residual blocks, the four mask slots in one chunk), after
a compilation of under a minute, so the 6000 steps (constant learning rate, then a linear
decay to zero, as in the paper) take 15-55 minutes; docs/results/README.md shows what
they learn.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Data
    config.dataset = "shapes"  # shapes | folder | coco
    config.dataroot = ""  # folder: the authors' layout; coco: a local COCO 2017
    config.data_dir = ""  # where tfds keeps prepared datasets; "" = WORKDIR/../tfds_data
    config.phase = "train"  # split prefix: {phase}A, {phase}B
    config.eval_phase = "test"  # held-out split prefix for pictures and evaluation
    config.load_size = (36, 36)  # (H, W) after the bicubic resize
    config.fine_size = (32, 32)  # (H, W) of the random crop; multiples of 4
    config.shapes_size = 40  # shapes: side of the generated images
    config.shapes_num_train = 2000  # shapes: images per domain in train
    config.shapes_num_test = 200  # shapes: images per domain in test
    config.shapes_max_instances = 4  # shapes: instances per image (1..this)
    config.shapes_task = "squares"  # shapes: discs <-> squares, discs <-> bars (harder), chosen (squares + bystanders)
    config.coco_categories = ("sheep", "giraffe")  # coco: the A and B categories
    config.skip_bad_files = False  # folder: skip and count unusable images instead of failing
    config.binary_masks = True  # masks thresholded at half after the resize: squarer masks; paper: False
    config.decode_once = True  # decode + resize each image once and keep it in memory (uint8); off if RAM is short
    config.batch_size = 4  # global batch, divided over all devices
    config.mesh_shape = (-1,)  # devices on the (data,) axis: -1 = all devices of all processes
    # Model (each departure from the paper and what it measured: docs/training.md)
    config.model = "insta_gan"  # insta_gan | cycle_gan (the baseline)
    config.ngf = 16  # generator width (paper: 64)
    config.ngf_mask = 8  # InstaGAN's mask-encoder width: 8 is faster, as good or better; 0: ngf (paper)
    config.mask_decoder_width = 0  # its mask decoder's: 0 = its input channels / 4 (paper), here 32
    config.ndf = 16  # discriminator width (paper: 64)
    config.n_blocks = 3  # residual blocks per encoder (paper: 9)
    config.n_layers_d = 2  # the discriminators' strided layers: 2 paints more squares at 32x32; paper: 3
    config.compute_dtype = "float32"  # float32 | bfloat16: the networks compute in it (parameters stay float32)
    config.remat = "none"  # none | block | network: recompute in the backward pass (docs/scale_out.md)
    config.upsample = "resize_conv"  # resize_conv (no checkerboard) | transpose (paper; the authors' checkpoints)
    # Sequential mini-batch
    config.ins_max = 4  # instance slots per image (largest first)
    config.ins_per = 4  # slots per chunk: all in one here (more squares, faster steps); paper: 2
    config.set_order = "decreasing"  # decreasing | random
    # Losses
    config.gan_loss = "lsgan"  # lsgan | vanilla
    config.lambda_a = 10.0
    config.lambda_b = 10.0
    config.lambda_idt = 1.0
    config.lambda_ctx = 1.0
    config.pool_size = 50
    # Optimisation
    config.learning_rate = 4e-4  # the paper's 2e-4 learns shapes slower in runs this short (docs/training.md)
    config.beta1 = 0.5
    config.ema_decay = 0.999  # translate and evaluate with a moving average of the generators; 0 = off (paper)
    config.num_train_steps = 6000
    config.niter = 3000  # steps at constant learning rate, then linear decay over niter_decay
    config.niter_decay = 3000
    config.seed = 0
    config.init_from = ""  # workdir of a converted authors' checkpoint to fine-tune from
    # Bookkeeping
    config.log_every_steps = 50
    config.image_every_steps = 500
    config.checkpoint_every_steps = 300
    config.max_checkpoints_to_keep = 3  # at least 1: the newest is always kept
    config.memory_limit_gb = 0  # refuse a config whose arrays alone need more; 0 = this machine's memory
    config.allow_config_change = False  # resume even if model or data shape keys changed
    return config
