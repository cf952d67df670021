"""The paper's jeans -> skirt (ClothingCoParsing): 330x220 -> 300x200, niter 400, niter_decay 200 epochs.

    python experiments/train.py --workdir runs/jeans2skirt --config experiments/configs/jeans2skirt_ccp.py \
        --config.dataroot=datasets/jeans2skirt_ccp
"""

from configs import folder


def get_config():
    config = folder.get_config()
    config.dataroot = "datasets/jeans2skirt_ccp"
    config.load_size = (330, 220)
    config.fine_size = (300, 200)
    images_per_epoch = 150  # roughly the size of the CCP jeans / skirt sets
    config.num_train_steps = 600 * images_per_epoch
    config.niter = 400 * images_per_epoch
    config.niter_decay = 200 * images_per_epoch
    return config
