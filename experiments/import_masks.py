r"""Turns instance masks you already have into the authors' layout, next to your photos.

    python experiments/import_masks.py --format labelme --input photos/ --output_dir datasets/mine/testA_seg
    python experiments/import_masks.py --format coco --input annotations.json --labels sheep \
        --output_dir datasets/mine/testA_seg
    python experiments/import_masks.py --format label_image --input labels/ --output_dir datasets/mine/testA_seg

labelme: a folder of labelme JSON files (or one file); polygons, rectangles and circles, shapes
sharing a group_id as one instance. coco: one COCO-style JSON for a folder of photos (polygons
or RLE). label_image: a folder of label images (or one), 0 / black = background, each other
value or colour one instance. Writes OUTPUT_DIR/{stem}_{k}.png (255 = instance), which
translate.py and the folder dataset read.
"""

import glob
import os

from absl import app, flags
from tqdm import tqdm

from instagan_jax import checks, cli, image_io, mask_import

flags.DEFINE_enum("format", None, ["labelme", "coco", "label_image"], "What --input holds.", required=True)
flags.DEFINE_string("input", None, "A file, or a folder of files (labelme, label_image).", required=True)
flags.DEFINE_string("output_dir", None, "Where the {stem}_{k}.png masks go.", required=True)
flags.DEFINE_list("labels", None, "labelme labels / COCO category names to keep; all if unset.")
FLAGS = flags.FLAGS


def input_files(pattern_extensions) -> list[str]:
    if os.path.isdir(FLAGS.input):
        files = sorted(p for ext in pattern_extensions for p in glob.glob(os.path.join(FLAGS.input, f"*{ext}")))
        if not files:
            raise image_io.DataError(f"{FLAGS.input}: no {'/'.join(pattern_extensions)} files")
        return files
    if not os.path.exists(FLAGS.input):
        raise FileNotFoundError(f"--input {FLAGS.input} does not exist")
    return [FLAGS.input]


def read_all():
    """(stem, masks, source file) for every photo of the input."""
    labels = set(FLAGS.labels) if FLAGS.labels else None
    if FLAGS.format == "coco":
        for stem, masks in tqdm(mask_import.read_coco(FLAGS.input, labels), desc="coco", unit="photo"):
            yield stem, masks, FLAGS.input
    elif FLAGS.format == "labelme":
        for path in tqdm(input_files((".json",)), desc="labelme", unit="file"):
            stem, masks = mask_import.read_labelme(path, labels)
            yield stem, masks, path
    else:
        for path in tqdm(input_files(image_io.IMAGE_EXTENSIONS), desc="label images", unit="file"):
            yield image_io.image_stem(path), mask_import.read_label_image(path), path


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    checks.writable_folder(FLAGS.output_dir, "--output_dir")
    photos = instances = empty = 0
    written_by = {}
    existing = image_io.index_masks(FLAGS.output_dir) if os.path.isdir(FLAGS.output_dir) else {}
    for stem, masks, source in read_all():
        if stem in written_by:
            raise image_io.DataError(f"{source}: photo {stem!r} was already imported from {written_by[stem]}")
        if stem in existing:  # old masks of the photo would mix with the new ones
            raise image_io.DataError(f"{FLAGS.output_dir} already holds masks of {stem!r}; remove them first")
        written_by[stem] = source
        if not len(masks):
            empty += 1
            continue
        mask_import.write_masks(FLAGS.output_dir, stem, masks, source)
        photos, instances = photos + 1, instances + len(masks)
    print(f"Wrote {instances} masks of {photos} photos to {FLAGS.output_dir}"
          + (f"; {empty} photos had no instance" if empty else ""))  # fmt: skip


if __name__ == "__main__":
    cli.run(main)
