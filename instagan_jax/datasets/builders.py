"""tfds builders. Each yields {"image", "masks", "id"} examples in splits named like the
authors' folders (trainA, trainB, testA, ...); masks are uint8 (H, W, 1), 255 = instance.

    instagan_shapes  procedural discs <-> squares, no download (the default for training)
    instagan_folder  a dataroot in the authors' layout, passed as the manual dir
    instagan_coco    two COCO categories from a local COCO 2017 (needs pycocotools)

Everything is generated locally with ``download_and_prepare``; nothing is downloaded.
``prepare`` builds one by name; ``training_data`` prepares a training run's from its config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from instagan_jax import image_io
from instagan_jax.datasets import DATASETS, shapes

_VERSION = tfds.core.Version("1.0.0")
# A data_dir holding this file (or only these builders' folders) is ours to prepare datasets in.
DATA_DIR_MARKER = ".instagan_jax_data"
BUILDER_NAMES = ("instagan_shapes", "instagan_folder", "instagan_coco", "downloads")


def _features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(None, None, 3)),
            "masks": tfds.features.Sequence(tfds.features.Image(shape=(None, None, 1))),
            "id": tfds.features.Text(),
        }
    )


def _example(stem: str, image: np.ndarray, masks: np.ndarray) -> dict:
    return {"image": image, "masks": [m[..., None] for m in masks], "id": stem}


SHAPES_TEST_SEED_OFFSET = 7919  # the test split renders with the config's seed + this; train with the seed


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
    size: int = 64
    num_train: int = 2000
    num_test: int = 200
    max_instances: int = 8
    min_instances: int = 1
    seed: int = 0
    task: str = "squares"  # shapes.TASKS: what domain B holds


class InstaganShapes(tfds.core.GeneratorBasedBuilder):
    """Procedural discs (A) <-> squares or bars (B) with exact instance masks."""

    VERSION = _VERSION
    BUILDER_CONFIGS = [ShapesConfig(name="default", description="64x64, 2000 + 200 images per domain")]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=_features(), description=shapes.__doc__)

    def _split_generators(self, dl_manager):
        del dl_manager
        c = self.builder_config
        return {
            f"{phase}{domain}": self._generate_examples(domain, c.seed + offset, count)
            for phase, offset, count in (("train", 0, c.num_train), ("test", SHAPES_TEST_SEED_OFFSET, c.num_test))
            for domain in "AB"
        }

    def _generate_examples(self, domain, seed, count):
        c = self.builder_config
        for i in range(count):
            image, masks = shapes.render(domain, seed, i, (c.size, c.size), c.max_instances, c.min_instances, c.task)
            yield i, _example(f"{domain}{i:06d}", image, masks)


def phase_splits(root: str) -> list[str]:
    """Split names (trainA, sampleB, ...) of a dataroot: every X/ that has an X_seg/ beside it."""
    if not os.path.isdir(root):
        raise image_io.DataError(f"{root}: dataroot does not exist")
    splits = sorted(
        name
        for name in os.listdir(root)
        if name[-1:] in "AB"
        and os.path.isdir(os.path.join(root, name))
        and os.path.isdir(os.path.join(root, f"{name}_seg"))
    )
    if not splits:
        raise image_io.DataError(f"{root}: no phase folders (e.g. trainA/ with trainA_seg/) in this dataroot")
    return splits


@dataclasses.dataclass
class FolderConfig(tfds.core.BuilderConfig):
    skip_bad_files: bool = False  # skip (and count) unusable images instead of failing


class InstaganFolder(tfds.core.GeneratorBasedBuilder):
    """A dataset in the authors' layout; every {phase}A/{phase}A_seg pair becomes a split."""

    VERSION = _VERSION
    BUILDER_CONFIGS = [FolderConfig(name="default")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Pass the dataroot (holding trainA/, trainA_seg/, ...) as manual_dir."

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=_features())

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        splits = phase_splits(root)
        return {name: self._generate_examples(root, name[:-1], name[-1]) for name in splits}

    def _generate_examples(self, root, phase, domain):
        image_dir, mask_dir = image_io.domain_dirs(root, phase, domain)
        mask_index = image_io.index_masks(mask_dir)
        skipped, paths = 0, image_io.list_images(image_dir)
        for path in paths:
            stem = image_io.image_stem(path)
            try:
                image, masks = image_io.read_raw_example(path, mask_index.get(stem, []))
            except image_io.DataError as e:
                if not self.builder_config.skip_bad_files:
                    raise
                skipped += 1
                logging.warning("skipping %s", e)
                continue
            yield stem, _example(stem, image, masks)
        if skipped:
            logging.warning("%s%s: skipped %d unusable images", phase, domain, skipped)
            if skipped == len(paths):
                raise image_io.DataError(f"{image_dir}: every image was skipped as unusable (the warnings above say "
                                         "why); nothing is left to train on")  # fmt: skip


@dataclasses.dataclass
class CocoConfig(tfds.core.BuilderConfig):
    category_a: str = "sheep"
    category_b: str = "giraffe"
    image_size: int = 256


class InstaganCoco(tfds.core.GeneratorBasedBuilder):
    """Two COCO 2017 categories, one mask per instance, as the authors' generate_coco_dataset.py.

    Images and masks are resized (shorter side) and centre-cropped to image_size; instances
    empty after the resize and images left without any instance are dropped.
    """

    VERSION = _VERSION
    BUILDER_CONFIGS = [CocoConfig(name="sheep_giraffe")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Pass a local COCO 2017 as manual_dir: annotations/instances_{train,val}2017.json, train2017/, val2017/."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=_features())

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        c = self.builder_config
        return {
            f"{phase}{domain}": self._generate_examples(root, coco_split, category)
            for phase, coco_split in (("train", "train"), ("test", "val"))
            for domain, category in (("A", c.category_a), ("B", c.category_b))
        }

    def _generate_examples(self, root, coco_split, category):
        try:
            from pycocotools.coco import COCO
        except ImportError as e:
            raise ImportError("instagan_coco needs pycocotools: pip install 'instagan-jax[coco]'") from e
        from PIL import Image

        annotations = os.path.join(root, "annotations", f"instances_{coco_split}2017.json")
        if not os.path.isfile(annotations):
            raise image_io.DataError(f"{annotations}: COCO annotation file not found")
        try:
            coco = COCO(annotations)
        except Exception as e:  # noqa: BLE001 - malformed JSON or structure, named
            raise image_io.DataError(f"{annotations}: not a COCO annotation file ({type(e).__name__}: {e})") from None
        cat_ids = coco.getCatIds(catNms=[category])
        if not cat_ids:
            raise image_io.DataError(f"{annotations}: no COCO category named {category!r}")
        size = self.builder_config.image_size

        def resize_crop(img: Image.Image) -> np.ndarray:
            w, h = img.size
            scale = size / min(w, h)
            img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
            left, top = (img.size[0] - size) // 2, (img.size[1] - size) // 2
            return np.asarray(img.crop((left, top, left + size, top + size)))

        found = 0
        for info in coco.loadImgs(coco.getImgIds(catIds=cat_ids)):
            if not 0 < info["height"] * info["width"] <= image_io.MAX_IMAGE_PIXELS:  # annToMask allocates h x w
                raise image_io.DataError(f"{annotations}: image {info['id']} is {info['width']}x{info['height']}")
            anns = coco.loadAnns(coco.getAnnIds(imgIds=info["id"], catIds=cat_ids))
            masks = [resize_crop(Image.fromarray(coco.annToMask(a) * 255)) for a in anns]
            masks = [m for m in masks if m.any()]
            if not masks:
                continue
            image = resize_crop(image_io.open_image(os.path.join(root, f"{coco_split}2017", info["file_name"]), "RGB"))
            found += 1
            yield info["id"], _example(str(info["id"]), image, np.stack(masks))
        if not found:  # tfds cannot write an empty split
            raise image_io.DataError(f"{annotations}: no image holds a {category!r} instance")


def prepare(
    dataset: str,
    data_dir: str,
    *,
    dataroot: str | None = None,
    shapes: ShapesConfig | None = None,
    coco: CocoConfig | None = None,
    skip_bad_files: bool = False,
) -> tfds.core.DatasetBuilder:
    """Builds (once; later calls reuse it) and returns the builder of ``dataset``.

    dataset: "shapes" (procedural; ``shapes`` sets size and counts), "folder" (``dataroot``
    in the authors' layout) or "coco" (``dataroot`` = a local COCO 2017; ``coco`` sets the
    categories).
    """
    if dataset not in _PREPARERS:
        raise ValueError(f"unknown dataset {dataset!r}: expected one of {DATASETS}")
    if dataset != "shapes":
        if not dataroot:
            raise ValueError(f"dataset {dataset!r} needs a dataroot")
        if not os.path.isdir(dataroot):
            raise image_io.DataError(f"{dataroot}: dataroot does not exist")
    builder, download_config = _PREPARERS[dataset](data_dir, dataroot, shapes, coco, skip_bad_files)
    if not _is_prepared(builder):
        _announce(builder, dataset, dataroot)
    builder.download_and_prepare(download_config=download_config)
    return builder


def _shapes_builder(data_dir, dataroot, shapes_config, coco, skip_bad_files):
    return InstaganShapes(config=shapes_config or ShapesConfig(name="default"), data_dir=data_dir), None


def _manual(dataroot: str) -> tfds.download.DownloadConfig:
    return tfds.download.DownloadConfig(manual_dir=os.path.abspath(dataroot))


def _folder_builder(data_dir, dataroot, shapes_config, coco, skip_bad_files):
    """One prepared copy per dataroot and content: named after the folder, its path and a
    fingerprint of its files, so that a changed folder is prepared again, never stale."""
    digest = hashlib.sha1(os.path.abspath(dataroot).encode()).hexdigest()[:8]
    name = f"{os.path.basename(os.path.normpath(dataroot))}_{digest}_{folder_fingerprint(dataroot)}"
    config = FolderConfig(name=name, skip_bad_files=skip_bad_files)
    return InstaganFolder(config=config, data_dir=data_dir), _manual(dataroot)


def _coco_builder(data_dir, dataroot, shapes_config, coco, skip_bad_files):
    """Named by its annotation files too: new annotations are prepared again."""
    coco = coco or CocoConfig(name="sheep_giraffe")
    coco = dataclasses.replace(coco, name=f"{coco.name}_{files_fingerprint(dataroot, ['annotations'])}")
    return InstaganCoco(config=coco, data_dir=data_dir), _manual(dataroot)


# dataset name -> (data_dir, dataroot, shapes config, coco config, skip_bad_files) -> (builder, download config)
_PREPARERS = {"shapes": _shapes_builder, "folder": _folder_builder, "coco": _coco_builder}
assert tuple(_PREPARERS) == DATASETS, "every dataset name has its preparer"


def folder_fingerprint(dataroot: str) -> str:
    """files_fingerprint of the phase folders: changes whenever an image or mask is added, removed,
    replaced or edited."""
    return files_fingerprint(dataroot, [name for split in phase_splits(dataroot) for name in (split, f"{split}_seg")])


def files_fingerprint(root: str, folders: list[str]) -> str:
    """A digest of the names, sizes and modification times of the files in ``root``'s ``folders``."""
    entries = []
    for folder in folders:
        if not os.path.isdir(os.path.join(root, folder)):
            continue
        with os.scandir(os.path.join(root, folder)) as it:
            for entry in it:
                info = entry.stat(follow_symlinks=False)
                entries.append(f"{folder}/{entry.name}\0{info.st_size}\0{info.st_mtime_ns}")
    return hashlib.sha1("\n".join(sorted(entries)).encode("utf-8", "surrogateescape")).hexdigest()[:12]


def _is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
    return os.path.isfile(os.path.join(builder.data_dir, "dataset_info.json"))


def _announce(builder: tfds.core.DatasetBuilder, dataset: str, dataroot: str | None) -> None:
    """Says before a preparation starts how much it will do and about how long it will take,
    from the time of a few examples (the bars that follow count each split)."""
    c = builder.builder_config
    if dataset == "shapes":
        total = 2 * (c.num_train + c.num_test)
        sample = min(20, c.num_train)
        start = time.perf_counter()
        for i in range(sample):
            shapes.render("A", c.seed, i, (c.size, c.size), c.max_instances, c.min_instances, c.task)
        # encoding and writing an example take about three times as long as rendering it
        seconds = 4 * total * (time.perf_counter() - start) / sample
        what = f"{total} generated images"
    else:
        seconds, what = None, f"the images of {dataroot}"
        if dataset == "folder":
            counts = sum(len(os.listdir(os.path.join(dataroot, s))) for s in phase_splits(dataroot))
            what = f"{counts} images of {dataroot}"
    eta = "" if seconds is None else f", about {seconds:.0f} s" if seconds < 120 else f", about {seconds / 60:.0f} min"
    logging.info("preparing %s/%s once under %s: %s%s", builder.name, c.name, builder.data_dir, what, eta)
