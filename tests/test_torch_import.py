"""Reading the authors' .pth files without torch, and the errors a user sees."""

import os
import shutil
import zipfile

import jax
import numpy as np
import pytest

from instagan_jax.torch_import import NotInstaGANError, convert_checkpoint_dir
from instagan_jax.torch_pickle import TorchFileError, load_state_dict


def test_reads_zip_and_legacy_formats_identically(golden_dir):
    zipped = load_state_dict(golden_dir / "latest_net_G_A.pth")
    legacy = load_state_dict(golden_dir / "legacy_net_G_A.pth")
    assert zipfile.is_zipfile(golden_dir / "latest_net_G_A.pth")
    assert not zipfile.is_zipfile(golden_dir / "legacy_net_G_A.pth")
    assert zipped.keys() == legacy.keys()
    for key in zipped:
        np.testing.assert_array_equal(zipped[key], legacy[key])
    assert zipped["encoder_img.1.weight"].shape == (4, 3, 7, 7)
    assert zipped["decoder_seg.0.weight"].shape == (48, 24, 3, 3)  # (in = 3 x 4ngf, out) transposed conv


def test_infers_architecture_and_imports_all_four_networks(converted):
    spec, nets = converted
    assert (spec.model, spec.ngf, spec.ndf, spec.n_blocks, spec.n_layers_d) == ("insta_gan", 4, 4, 9, 3)
    assert sorted(nets) == ["D_A", "D_B", "G_A", "G_B"]
    assert nets["D_A"]["spectral"]["classifier"]["conv_0"]["u"].shape == (64,)
    assert not np.array_equal(
        nets["G_A"]["params"]["encoder_img"]["conv_in"]["kernel"],
        nets["G_B"]["params"]["encoder_img"]["conv_in"]["kernel"],
    )


def test_discriminators_are_optional(tmp_path, golden_dir):
    for name in ("G_A", "G_B"):
        shutil.copy(golden_dir / f"latest_net_{name}.pth", tmp_path / f"200_net_{name}.pth")
    spec, nets = convert_checkpoint_dir(str(tmp_path), epoch="200")
    assert sorted(nets) == ["G_A", "G_B"] and spec.ngf == 4


def test_missing_generator_file_is_named(tmp_path, golden_dir):
    shutil.copy(golden_dir / "latest_net_G_A.pth", tmp_path / "latest_net_G_A.pth")
    with pytest.raises(FileNotFoundError, match="latest_net_G_B.pth"):
        convert_checkpoint_dir(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert_checkpoint_dir(str(tmp_path / "nowhere"))


def test_a_file_that_is_not_torch_is_rejected_with_its_name(tmp_path):
    bad = tmp_path / "latest_net_G_A.pth"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not a checkpoint")
    with pytest.raises(TorchFileError, match="latest_net_G_A.pth"):
        load_state_dict(bad)
    with zipfile.ZipFile(tmp_path / "x.pth", "w") as z:
        z.writestr("archive/readme.txt", "hello")
    with pytest.raises(TorchFileError, match="data.pkl"):
        load_state_dict(tmp_path / "x.pth")


def test_foreign_or_mismatched_state_dicts_are_explained(tmp_path, golden_dir):
    # A discriminator saved as a generator: not an InstaGAN generator.
    shutil.copy(golden_dir / "latest_net_D_A.pth", tmp_path / "latest_net_G_A.pth")
    shutil.copy(golden_dir / "latest_net_G_B.pth", tmp_path / "latest_net_G_B.pth")
    with pytest.raises(NotInstaGANError, match="not an InstaGAN/CycleGAN generator"):
        convert_checkpoint_dir(str(tmp_path))
    # G_A and G_B of different architectures (InstaGAN vs CycleGAN).
    shutil.copy(golden_dir / "cyclegan" / "latest_net_G_A.pth", tmp_path / "latest_net_G_A.pth")
    with pytest.raises(NotInstaGANError, match="differ in architecture"):
        convert_checkpoint_dir(str(tmp_path))
    # A discriminator whose width does not fit the generator pair's D_B: shapes named.
    shutil.copy(golden_dir / "latest_net_G_A.pth", tmp_path / "latest_net_G_A.pth")
    shutil.copy(golden_dir / "latest_net_D_A.pth", tmp_path / "latest_net_D_A.pth")
    shutil.copy(golden_dir / "cyclegan" / "latest_net_D_B.pth", tmp_path / "latest_net_D_B.pth")
    with pytest.raises(NotInstaGANError, match="latest_net_D_B.pth.*(missing key|unexpected)"):
        convert_checkpoint_dir(str(tmp_path))
    os.remove(tmp_path / "latest_net_D_B.pth")
    spec, nets = convert_checkpoint_dir(str(tmp_path))  # one discriminator alone is skipped
    assert "D_A" not in nets and jax.tree.leaves(nets["G_A"])


def test_a_tensor_of_the_wrong_shape_is_named(converted, golden_dir):
    from instagan_jax.torch_import import fill_variables, generator_entries

    spec, nets = converted
    state = load_state_dict(golden_dir / "latest_net_G_A.pth")
    state["decoder_img.7.weight"] = state["decoder_img.7.weight"][:, :5]
    with pytest.raises(NotInstaGANError, match=r"decoder_img.7.weight.*does not fit decoder_img/conv_out/kernel"):
        fill_variables(nets["G_A"], generator_entries(spec), state, "G_A.pth")
