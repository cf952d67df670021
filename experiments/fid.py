r"""FID and KID between two folders of photos, as pytorch-fid and torch-fidelity compute them.

    python experiments/fid.py --fid_weights pt_inception-2015-12-05-6726825d.pth results/ datasets/shp2gir_coco/testB
    python experiments/fid.py --fid_weights W --save_stats datasets/testB testB_stats.npz   # pytorch-fid's --save-stats

Each argument is a folder of photos or a ``.npz`` of statistics (``mu``, ``sigma``: pytorch-fid's
files work). A folder translate.py wrote counts only its translations (``*_fake_?_img.png``).
The weights are pytorch-fid's Inception file, downloaded once by hand from
https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
and checked by its SHA-256; nothing is downloaded here. KID needs two folders (a statistics
file holds no features) and at least two photos each.
"""

import os

from absl import app, flags
from tqdm import tqdm

from instagan_jax import checks, cli, fid, inception, json_files

flags.DEFINE_string("fid_weights", None, f"pytorch-fid's {inception.WEIGHTS_NAME}.", required=True)
flags.DEFINE_string("fid_weights_sha256", inception.WEIGHTS_SHA256,
                    "The SHA-256 the weights must have; 'any' accepts other Inception weights of the same structure "
                    "(their scores are not comparable with published ones).")  # fmt: skip
flags.DEFINE_enum("dims", "2048", [str(d) for d in inception.BLOCKS_FOR_DIMS], "Feature width (pytorch-fid's --dims).")
flags.DEFINE_integer("batch_size", 50, "Photos per network call.", lower_bound=1, upper_bound=4096)
flags.DEFINE_integer("kid_subsets", fid.KID_SUBSETS, "KID subsets (0: no KID).", lower_bound=0, upper_bound=100_000)
flags.DEFINE_integer("kid_subset_size", fid.KID_SUBSET_SIZE, "Photos per KID subset (fewer if a set is smaller).",
                     lower_bound=2, upper_bound=1_000_000)  # fmt: skip
flags.DEFINE_bool("save_stats", False, "Write the first folder's statistics to the second path (.npz) instead.")
flags.DEFINE_string("json", None, "Also write the scores to this JSON file.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) != 3:
        raise app.UsageError(f"two paths are needed (folders or .npz statistics), got {argv[1:]}")
    first, second = argv[1:]
    for path in [first] if FLAGS.save_stats else [first, second]:
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such folder or statistics file: {path}")
    if FLAGS.save_stats:
        checks.writable_file(second, "the statistics file")
    if FLAGS.json:
        checks.writable_file(FLAGS.json, "--json")
    sha256 = None if FLAGS.fid_weights_sha256 == "any" else FLAGS.fid_weights_sha256
    dims = int(FLAGS.dims)
    extractor = fid.InceptionFeatures(inception.load_weights(FLAGS.fid_weights, dims, sha256), dims, FLAGS.batch_size)
    keep = FLAGS.kid_subsets > 0 and not FLAGS.save_stats

    def read(path):
        return fid.statistics_of_path(path, extractor, keep, progress=lambda p: tqdm(p, desc=path, unit="photo"))

    if FLAGS.save_stats:
        read(first).save(second)
        print(f"Wrote the statistics of {first} to {second}")
        return
    scores = fid.compare(read(first), read(second), FLAGS.kid_subsets, FLAGS.kid_subset_size)
    scores.update(dims=dims, paths=[first, second])
    line = f"FID: {scores['fid']:.4f}"
    if "kid" in scores:
        line += f"  KID: {scores['kid']:.5f} ± {scores['kid_std']:.5f} (subsets of {scores['kid_subset_size']})"
    print(line)
    if FLAGS.json:
        json_files.write_json(FLAGS.json, scores, indent=2)


if __name__ == "__main__":
    cli.run(main)
