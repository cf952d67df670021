"""Regenerates tests/data/golden/fid.npz from pytorch-fid and torch-fidelity themselves.

Not part of the test suite. Run once, by hand, in a throwaway virtualenv with torch,
torchvision, scipy, pytorch-fid 0.3.0 and torch-fidelity 0.4.0 (nothing is downloaded: the
network's weights are drawn from tests/inception_weights.py's seed, loaded into pytorch-fid's
own model in place of the real file):

    python tests/golden/make_fid_golden.py --out tests/data/golden/fid.npz

It records the network's tensor names and shapes, the four feature taps of pytorch-fid's
InceptionV3 on a few photos (two enlarged to 299x299, two reduced), rows of the resized input,
pytorch-fid's Fréchet distance (a regular and a singular pair of covariances), and
torch-fidelity's KID on fixed feature sets.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from pytorch_fid import inception as pytorch_fid_inception
from pytorch_fid.fid_score import calculate_frechet_distance
from torch_fidelity.metric_kid import kid_features_to_metric

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import inception_weights  # noqa: E402

RESIZED_ROWS = (0, 1, 150, 298)


def seeded_pytorch_fid_model():
    """pytorch-fid's InceptionV3 with every block, holding the seeded weights."""
    state = {}
    original_load = torchvision.models.inception.Inception3.load_state_dict

    def load_seeded(self, _ignored, strict=True):
        shapes = {name: tuple(t.shape) for name, t in self.state_dict().items()}
        state.update(inception_weights.seeded_state_dict(shapes))
        return original_load(self, {k: torch.from_numpy(v) for k, v in state.items()}, strict=True)

    pytorch_fid_inception.load_state_dict_from_url = lambda *args, **kwargs: {}
    torchvision.models.inception.Inception3.load_state_dict = load_seeded
    try:
        model = pytorch_fid_inception.InceptionV3(output_blocks=[0, 1, 2, 3]).eval()
    finally:
        torchvision.models.inception.Inception3.load_state_dict = original_load
    return model, state


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="tests/data/golden/fid.npz")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, state = seeded_pytorch_fid_model()
    out = {"layout": np.array(json.dumps({k: list(v.shape) for k, v in state.items()}))}
    for i, image in enumerate(inception_weights.golden_images()):
        x = torch.from_numpy(image).permute(2, 0, 1)[None]
        resized = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        out[f"resized_rows_{i}"] = resized[0].permute(1, 2, 0).numpy()[list(RESIZED_ROWS)]
        with torch.no_grad():
            taps = model(x)
        for tap in taps:
            pooled = F.adaptive_avg_pool2d(tap, (1, 1))[0, :, 0, 0].numpy()
            out[f"features_{i}_{pooled.shape[0]}"] = pooled
    a, b = inception_weights.feature_sets()
    for name, (x, y) in {"regular": (a, b), "singular": (a[:40], b[:30])}.items():
        mu1, sigma1 = np.mean(x.astype(np.float64), 0), np.cov(x.astype(np.float64), rowvar=False)
        mu2, sigma2 = np.mean(y.astype(np.float64), 0), np.cov(y.astype(np.float64), rowvar=False)
        out[f"fid_{name}"] = np.float64(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))
    for subsets, size in ((10, 100), (1, 240)):
        kid = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=subsets,
                                     kid_subset_size=size, rng_seed=2020, verbose=False)  # fmt: skip
        out[f"kid_{subsets}x{size}"] = np.array([kid["kernel_inception_distance_mean"],
                                                 kid["kernel_inception_distance_std"]])  # fmt: skip
    np.savez_compressed(args.out, **out)
    print({k: v.shape for k, v in out.items()})
    print({k: out[k] for k in out if k.startswith(("fid", "kid"))})


if __name__ == "__main__":
    main()
