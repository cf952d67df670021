"""The paper's sheep -> giraffe (MS COCO): 220x220 -> 200x200, ins_max 4, ins_per 2.

    python experiments/train.py --workdir runs/shp2gir --config experiments/configs/shp2gir_coco.py \
        --config.dataroot=datasets/shp2gir_coco            # the authors' generated folders
    # or from a local COCO 2017: --config.dataset=coco --config.dataroot=/data/coco
Paper schedule: 200 + 200 epochs at batch 1 (about 1,350 images per domain).
"""

from configs import folder


def get_config():
    config = folder.get_config()
    config.dataroot = "datasets/shp2gir_coco"
    config.coco_categories = ("sheep", "giraffe")
    config.load_size = (220, 220)
    config.fine_size = (200, 200)
    config.num_train_steps = 400 * 1350
    config.niter = 200 * 1350
    config.niter_decay = 200 * 1350
    return config
