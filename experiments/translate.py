r"""Translates a folder in the authors' layout with a workdir's generators.

    python experiments/translate.py --workdir runs/shp2gir --dataroot datasets/shp2gir_coco \
        --phase test --direction AtoB --ins_per 2 --ins_max 20 --load_size 200,200 --output_dir results

Writes RES/{stem}_fake_B_img.png and RES/{stem}_fake_B_seg.png (the merged mask) per image of
{phase}A (fake_A_* from {phase}B with BtoA), as the authors' test.py names them.

Photos without masks: ``--masks auto --masker_workdir runs/shapes_masker`` predicts them with a
masker trained by experiments/train_masker.py (``--image_dir`` for a plain folder of photos)
and writes them to RES/predicted_masks/{stem}_{k}.png, to inspect or fix.
"""

import os

import numpy as np
from absl import app, flags
from PIL import Image
from tqdm import tqdm

from instagan_jax import checks, cli, domains, image_io, layers, mask_import
from instagan_jax import masker as masker_lib
from instagan_jax import masks as masks_lib
from instagan_jax.inference import Translator, prepare_masks
from instagan_jax.mask_prediction import MaskPredictor

flags.DEFINE_string("workdir", None, "Workdir holding the checkpoint (trained or converted).", required=True)
flags.DEFINE_string("dataroot", None, "Dataset root in the authors' layout (not needed with --image_dir).")
flags.DEFINE_string("phase", "test", "Folder prefix: {phase}A, {phase}A_seg, ...")
flags.DEFINE_enum(
    "direction", "AtoB", list(domains.DIRECTIONS), "AtoB reads {phase}A with G_A; BtoA reads {phase}B with G_B."
)
flags.DEFINE_integer("step", None, "Checkpoint step; the latest if unset.", lower_bound=0)
flags.DEFINE_integer("ins_per", 2, "Instances per sequential chunk.", lower_bound=1)
flags.DEFINE_integer("ins_max", 20, "Instances translated at most (largest first).", lower_bound=1,
                     upper_bound=checks.MAX_INSTANCES)  # fmt: skip
flags.DEFINE_list("load_size", None, "H,W to resize to (bicubic); the images' own size if unset.")
flags.DEFINE_integer("batch_size", 1, "Images of equal size translated together: more help an accelerator; on a CPU "
                     "one at a time is fastest (benchmarks/translate.py).", lower_bound=1)  # fmt: skip
flags.DEFINE_float("memory_limit_gb", 0, "Refuse photos whose arrays alone need more; 0: this machine's memory.",
                   lower_bound=0)  # fmt: skip
flags.DEFINE_enum(
    "compute_dtype",
    None,
    list(layers.COMPUTE_DTYPES),
    "The networks' compute dtype; the checkpoint's (float32) if unset. bfloat16 is for accelerators.",
)
flags.DEFINE_string("output_dir", None, "Where the PNGs go.", required=True)
flags.DEFINE_enum("masks", "given", ["given", "auto"], "given: read {phase}A_seg/; auto: predict them with a masker.")
flags.DEFINE_string("masker_workdir", None, "With --masks auto: a workdir of experiments/train_masker.py.")
flags.DEFINE_string("masker_scale", "auto", "With --masks auto: how many times larger the photos' objects are than "
                    "the masker's training objects; auto: read off each photo (docs/masks.md).")  # fmt: skip
flags.DEFINE_string("image_dir", None, "With --masks auto: a folder of photos to use instead of DATAROOT/{phase}A.")
FLAGS = flags.FLAGS


def output_name(path_or_stem: str, target: str, kind: str) -> str:
    """The authors' test.py names: {stem}_fake_B_img.png, {stem}_fake_B_seg.png."""
    return f"{image_io.image_stem(path_or_stem)}_fake_{target}_{kind}.png"


def batches_of_equal_size(examples, batch_size):
    """Groups (stem, image, masks) by image shape, yielding lists of at most batch_size."""
    pending = {}
    for example in examples:
        group = pending.setdefault(example[1].shape, [])
        group.append(example)
        if len(group) == batch_size:
            yield pending.pop(example[1].shape)
    yield from pending.values()


def padded(batch: np.ndarray, batch_size: int) -> np.ndarray:
    """A short last batch filled up with copies of its first example: one compiled program per size."""
    return np.concatenate([batch, np.repeat(batch[:1], batch_size - len(batch), axis=0)])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    size_hw = checks.parse_size(FLAGS.load_size, "--load_size") if FLAGS.load_size else None
    auto = FLAGS.masks == "auto"
    if not FLAGS.dataroot and not (auto and FLAGS.image_dir):
        raise app.UsageError("--dataroot is needed (or --masks auto with --image_dir)")
    if auto != bool(FLAGS.masker_workdir):
        raise app.UsageError("--masks auto needs --masker_workdir, and --masker_workdir needs --masks auto")
    masker_lib.parse_scale(FLAGS.masker_scale)
    checks.check_chunking(FLAGS.ins_max, FLAGS.ins_per, ("--ins_max", "--ins_per"))
    domain, target = domains.source(FLAGS.direction), domains.target(FLAGS.direction)
    if auto:
        image_dir, mask_index = FLAGS.image_dir or os.path.join(FLAGS.dataroot, f"{FLAGS.phase}{domain}"), {}
        if not os.path.isdir(image_dir):
            raise image_io.DataError(f"{image_dir}: folder not found")
    else:
        image_dir, mask_dir = image_io.domain_dirs(FLAGS.dataroot, FLAGS.phase, domain)
        mask_index = image_io.index_masks(mask_dir)
    paths = image_io.list_images(image_dir)  # refuses two photos of one stem, whose outputs would collide
    checks.writable_folder(FLAGS.output_dir, "--output_dir")
    for path in paths:
        checks.check_name(os.path.join(FLAGS.output_dir, output_name(path, target, "img")), f"the output of {path}")
    masker = None
    if auto:
        masker = MaskPredictor.from_workdir(FLAGS.masker_workdir, scale=FLAGS.masker_scale)
    translator = Translator.from_workdir(FLAGS.workdir, FLAGS.step, ins_per=FLAGS.ins_per, ins_max=FLAGS.ins_max,
                                         memory_limit_gb=FLAGS.memory_limit_gb,
                                         compute_dtype=FLAGS.compute_dtype)  # fmt: skip
    predicted_dir = os.path.join(FLAGS.output_dir, "predicted_masks")

    def examples():
        for path in paths:
            stem = image_io.image_stem(path)
            # refused from the header, before the photo and its masks are read at that size
            translator.check_memory(size_hw or image_io.stored_size(path), FLAGS.batch_size, what=path)
            if auto:
                image = image_io.read_image(path, size_hw)
            else:  # only the ins_max largest masks are kept: those the translation uses
                image, masks = image_io.read_example(path, mask_index.get(stem, []), size_hw, keep=FLAGS.ins_max)
            checks.check_image_size(
                *image.shape[:2], what=f"{path} (pass --load_size to resize)", error=image_io.DataError
            )
            if auto:  # written in the authors' layout: inspect, fix, and reuse as a _seg folder
                masks = masker(image[None])[0]
                found = masks[..., (masks > 0).any(axis=(0, 1))]
                mask_import.write_masks(predicted_dir, stem, np.moveaxis(found > 0, -1, 0), path)
            yield stem, image, prepare_masks(masks, FLAGS.ins_max)

    with tqdm(total=len(paths), desc=f"translate {FLAGS.direction}", unit="img") as progress:
        for batch in batches_of_equal_size(examples(), FLAGS.batch_size):
            stems, images, masks = zip(*batch, strict=True)
            out_images, out_masks = translator.translate_batch(
                padded(np.stack(images), FLAGS.batch_size), padded(np.stack(masks), FLAGS.batch_size), FLAGS.direction
            )
            out_images, out_masks = out_images[: len(batch)], out_masks[: len(batch)]
            merged = np.asarray(masks_lib.merge(out_masks))[..., 0]
            for stem, image, mask in zip(stems, out_images, merged, strict=True):
                for kind, array in (("img", image), ("seg", mask)):
                    path = os.path.join(FLAGS.output_dir, output_name(stem, target, kind))
                    Image.fromarray(image_io.to_uint8(array)).save(path)
            progress.update(len(batch))
    print(f"Wrote {2 * len(paths)} images to {FLAGS.output_dir}"
          + (f" and the predicted masks to {predicted_dir}" if auto else ""))  # fmt: skip


if __name__ == "__main__":
    cli.run(main)
