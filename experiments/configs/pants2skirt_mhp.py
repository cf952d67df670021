"""The paper's pants -> skirt (LV-MHP): 270x180 -> 240x160 (H x W), ins_max 4, ins_per 2.

    python experiments/train.py --workdir runs/pants2skirt --config experiments/configs/pants2skirt_mhp.py \
        --config.dataroot=datasets/pants2skirt_mhp
The authors note ethical concerns with clothing translation on people; prefer shp2gir_coco for demos.
"""

from configs import folder


def get_config():
    config = folder.get_config()
    config.dataroot = "datasets/pants2skirt_mhp"
    config.load_size = (270, 180)
    config.fine_size = (240, 160)
    return config
