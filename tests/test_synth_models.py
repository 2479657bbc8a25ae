"""The generators: sample shapes and classes, exact reproduction from seeds, save/load, resume, DP-SGD."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from synth_fixtures import make_patch_table

from thyrokit.synth.augment import diff_augment
from thyrokit.synth.config import (DataConfig, DiffusionConfig, GanConfig, PrivacyConfig, from_params, read_config,
                                   write_config)
from thyrokit.synth.data import decode_label, encode_label, from_tensor, load_training_patches
from thyrokit.synth.diffusion import load_diffusion, make_train_scheduler, make_unet, sample, save_diffusion
from thyrokit.synth.gan import Generator, generate
from thyrokit.synth.diffusion_training import train_diffusion
from thyrokit.synth.gan_training import load_gan, train_gan
from thyrokit.synth.sample import load_generator

SIZE = 16
CPU = torch.device("cpu")
TINY_DIFFUSION = DiffusionConfig(block_out_channels=(16, 32), steps=4, batch_size=8)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    folder = tmp_path_factory.mktemp("roi")
    table = make_patch_table(folder, {("train", "benign"): 24, ("train", "malignant"): 8}, size=SIZE)
    return load_training_patches(table, DataConfig(size=SIZE))


def test_labels_round_trip_pathology_and_tirads():
    classes = ("benign", "malignant")
    assert decode_label(encode_label(1, "TR4"), classes) == ("malignant", "TR4")
    assert decode_label(encode_label(0, None), classes) == ("benign", None)


def test_gan_samples_are_patch_and_binary_mask_pairs():
    generator = Generator(SIZE, num_labels=12, z_dim=8, channels=16)
    pairs = generate(generator, torch.tensor([0, 1, 6, 7]), [1, 2, 3, 4])
    assert pairs.shape == (4, 2, SIZE, SIZE)
    assert pairs.abs().max() <= 1
    images, masks = from_tensor(pairs)
    assert images.dtype == np.uint8 and images.shape == (4, SIZE, SIZE)
    assert set(np.unique(masks)) <= {0, 255}


def test_gan_sample_is_reproduced_by_its_seed_alone():
    generator = Generator(SIZE, num_labels=12, z_dim=8, channels=16)
    batch = generate(generator, torch.tensor([6, 0, 1]), [10, 11, 12])
    assert torch.equal(batch, generate(generator, torch.tensor([6, 0, 1]), [10, 11, 12]))
    alone = generate(generator, torch.tensor([0]), [11])
    torch.testing.assert_close(alone[0], batch[1], atol=1e-5, rtol=0)
    assert not torch.equal(batch[0], generate(generator, torch.tensor([6]), [99])[0])


def test_gan_label_changes_the_sample():
    generator = Generator(SIZE, num_labels=12, z_dim=8, channels=16)
    torch.nn.init.normal_(generator.blocks[0].norm1.shift.weight)
    pairs = generate(generator, torch.tensor([0, 7]), [5, 5])
    assert not torch.allclose(pairs[0], pairs[1])


def test_diffusion_samples_reproduce_from_seed_after_save_and_load(tmp_path):
    torch.manual_seed(0)
    unet = make_unet(SIZE, 12, TINY_DIFFUSION)
    save_diffusion(tmp_path, unet, make_train_scheduler(TINY_DIFFUSION))
    loaded, scheduler = load_diffusion(tmp_path, CPU)
    labels = torch.tensor([1, 7])
    first = sample(loaded, scheduler, labels, [3, 4], inference_steps=3, guidance_scale=2.0)
    assert first.shape == (2, 2, SIZE, SIZE) and first.abs().max() <= 1
    again, _ = load_diffusion(tmp_path, CPU)
    assert torch.equal(first, sample(again, scheduler, labels, [3, 4], inference_steps=3, guidance_scale=2.0))
    assert not torch.equal(first, sample(again, scheduler, labels, [5, 6], inference_steps=3, guidance_scale=2.0))


def test_diffusion_has_a_null_class_for_guidance_and_no_attention_above_8px():
    unet = make_unet(32, 12, DiffusionConfig(block_out_channels=(16, 32, 32)))
    assert unet.config.num_class_embeds == 13
    assert unet.config.down_block_types == ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D")


def test_translation_moves_patch_and_mask_together():
    pairs = -torch.ones(4, 2, SIZE, SIZE)
    pairs[:, :, 5:9, 6:10] = 1.0
    moved = diff_augment(pairs, ["translation", "cutout"], torch.Generator().manual_seed(0))
    assert torch.equal(moved[:, 0] > 0, moved[:, 1] > 0)
    assert not torch.equal(moved, pairs)


def test_resumed_gan_training_matches_an_uninterrupted_run(patches, tmp_path):
    data = DataConfig(size=SIZE)
    config = GanConfig(steps=4, batch_size=8, channels=16, z_dim=8, checkpoint_every=2, log_every=2)
    train_gan(patches, data, config, tmp_path / "straight", tmp_path / "live1", CPU, tmp_path / "a.pt")
    train_gan(patches, data, dataclasses.replace(config, steps=2), tmp_path / "half", tmp_path / "live2",
              CPU, tmp_path / "b.pt")
    train_gan(patches, data, config, tmp_path / "resumed", tmp_path / "live2", CPU, tmp_path / "b.pt")
    straight, _ = load_gan(tmp_path / "straight", CPU)
    resumed, _ = load_gan(tmp_path / "resumed", CPU)
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    assert (tmp_path / "straight/generator.pt").read_bytes() == (tmp_path / "resumed/generator.pt").read_bytes()
    curve = Path("plots") / "metrics" / "gan" / "loss_d.tsv"
    assert (tmp_path / "live1" / curve).read_text().splitlines()[1:] and all(
        (tmp_path / "live1" / name).read_bytes() == (tmp_path / "live2" / name).read_bytes()
        for name in (curve, Path("metrics.json")))


def test_diffusion_training_is_byte_identical_across_runs(patches, tmp_path):
    data = DataConfig(size=SIZE)
    weights = []
    for run in ("first", "second"):
        train_diffusion(patches, data, TINY_DIFFUSION, tmp_path / run, tmp_path / f"live-{run}", CPU)
        weights.append((tmp_path / run / "unet" / "diffusion_pytorch_model.safetensors").read_bytes())
    assert weights[0] == weights[1]


@pytest.mark.parametrize("kind", ["gan", "diffusion"])
def test_dp_reports_a_privacy_budget_that_shrinks_with_more_noise(patches, tmp_path, kind):
    data = DataConfig(size=SIZE)
    budgets = []
    for noise in (0.8, 2.0):
        privacy = PrivacyConfig(enabled=True, noise_multiplier=noise)
        config, trainer = ((GanConfig(steps=3, batch_size=8, channels=16, z_dim=8, privacy=privacy), train_gan)
                           if kind == "gan" else (dataclasses.replace(TINY_DIFFUSION, steps=3, privacy=privacy),
                                                  train_diffusion))
        metrics = trainer(patches, data, config, tmp_path / f"dp{noise}", tmp_path / f"live{noise}", CPU)
        assert metrics["delta"] == config.privacy.delta
        # The saved model carries the same budget, for synth_eval and the dataset card.
        assert load_generator(kind, tmp_path / f"dp{noise}", CPU).privacy == {
            "enabled": True, "epsilon": metrics["epsilon"], "delta": config.privacy.delta, "noise_multiplier": noise}
        budgets.append(metrics["epsilon"])
    assert 0 < budgets[1] < budgets[0] < float("inf")


def test_a_dp_model_without_its_privacy_report_is_refused(patches, tmp_path):
    config = GanConfig(steps=1, batch_size=8, channels=16, z_dim=8, privacy=PrivacyConfig(enabled=True))
    train_gan(patches, DataConfig(size=SIZE), config, tmp_path / "gan", tmp_path / "live", CPU)
    (tmp_path / "gan" / "privacy.json").unlink()
    with pytest.raises(ValueError, match="trained with DP-SGD but has no privacy.json"):
        load_generator("gan", tmp_path / "gan", CPU)


def test_config_round_trips_and_names_unknown_keys(tmp_path):
    gan = from_params(GanConfig, {"steps": 7, "diffaugment": ["cutout"], "privacy": {"enabled": True}}, "synth.gan")
    assert gan.privacy.enabled and gan.diffaugment == ("cutout",)
    write_config(tmp_path / "config.json", gan=gan)
    assert read_config(tmp_path / "config.json", "gan", GanConfig) == gan
    with pytest.raises(ValueError, match=r"synth.gan.privacy: unknown key\(s\) \['epsilon'\]"):
        from_params(GanConfig, {"privacy": {"epsilon": 3}}, "synth.gan")
