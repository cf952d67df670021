r"""Translates a folder in the authors' layout with a workdir's generators.

    python experiments/translate.py --workdir runs/shp2gir --dataroot datasets/shp2gir_coco \
        --phase test --direction AtoB --ins_per 2 --ins_max 20 --load_size 200,200 --output_dir results

Writes RES/{stem}_fake_B_img.png and RES/{stem}_fake_B_seg.png (the merged mask) per image of
{phase}A (fake_A_* from {phase}B with BtoA), as the authors' test.py names them.
"""

import os

import numpy as np
from absl import app, flags
from PIL import Image
from tqdm import tqdm

from instagan_jax import checks, cli, domains, image_io
from instagan_jax import masks as masks_lib
from instagan_jax.inference import Translator, prepare_masks

flags.DEFINE_string("workdir", None, "Workdir holding the checkpoint (trained or converted).", required=True)
flags.DEFINE_integer("step", None, "Checkpoint step; the latest if unset.")
flags.DEFINE_string("dataroot", None, "Dataset root in the authors' layout.", required=True)
flags.DEFINE_string("phase", "test", "Folder prefix: {phase}A, {phase}A_seg, ...")
flags.DEFINE_enum(
    "direction", "AtoB", list(domains.DIRECTIONS), "AtoB reads {phase}A with G_A; BtoA reads {phase}B with G_B."
)
flags.DEFINE_integer("ins_per", 2, "Instances per sequential chunk.")
flags.DEFINE_integer("ins_max", 20, "Instances translated at most (largest first).")
flags.DEFINE_list("load_size", None, "H,W to resize to (bicubic); the images' own size if unset.")
flags.DEFINE_integer("batch_size", 4, "Images of equal size translated together.")
flags.DEFINE_string("output_dir", None, "Where the PNGs go.", required=True)
FLAGS = flags.FLAGS


def batches_of_equal_size(examples, batch_size):
    """Groups (stem, image, masks) by image shape, yielding lists of at most batch_size."""
    pending = {}
    for example in examples:
        group = pending.setdefault(example[1].shape, [])
        group.append(example)
        if len(group) == batch_size:
            yield pending.pop(example[1].shape)
    yield from pending.values()


def main(argv):
    del argv
    size_hw = tuple(int(s) for s in FLAGS.load_size) if FLAGS.load_size else None
    if size_hw is not None:
        if len(size_hw) != 2:
            raise app.UsageError(f"--load_size must be H,W, got {FLAGS.load_size}")
        checks.check_image_size(*size_hw, what="--load_size", error=app.UsageError)
    translator = Translator.from_workdir(FLAGS.workdir, FLAGS.step, ins_per=FLAGS.ins_per, ins_max=FLAGS.ins_max)
    domain, target = domains.source(FLAGS.direction), domains.target(FLAGS.direction)
    image_dir, mask_dir = image_io.domain_dirs(FLAGS.dataroot, FLAGS.phase, domain)
    paths = image_io.list_images(image_dir)
    mask_index = image_io.index_masks(mask_dir)
    os.makedirs(FLAGS.output_dir, exist_ok=True)

    def examples():
        for path in paths:
            stem = image_io.image_stem(path)
            image, masks = image_io.read_example(path, mask_index.get(stem, []), size_hw)
            checks.check_image_size(
                *image.shape[:2], what=f"{path} (pass --load_size to resize)", error=image_io.DataError
            )
            yield stem, image, prepare_masks(masks, FLAGS.ins_max)

    with tqdm(total=len(paths), desc=f"translate {FLAGS.direction}", unit="img") as progress:
        for batch in batches_of_equal_size(examples(), FLAGS.batch_size):
            stems, images, masks = zip(*batch, strict=True)
            out_images, out_masks = translator.translate_batch(np.stack(images), np.stack(masks), FLAGS.direction)
            merged = np.asarray(masks_lib.merge(out_masks))[..., 0]
            for stem, image, mask in zip(stems, out_images, merged, strict=True):
                Image.fromarray(image_io.to_uint8(image)).save(
                    os.path.join(FLAGS.output_dir, f"{stem}_fake_{target}_img.png")
                )
                Image.fromarray(image_io.to_uint8(mask)).save(
                    os.path.join(FLAGS.output_dir, f"{stem}_fake_{target}_seg.png")
                )
            progress.update(len(batch))
    print(f"Wrote {2 * len(paths)} images to {FLAGS.output_dir}")


if __name__ == "__main__":
    cli.run(main)
