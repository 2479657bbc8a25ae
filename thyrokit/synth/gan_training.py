"""Training the conditional GAN: hinge loss, DiffAugment, an EMA generator, optional DP-SGD.

Each step updates the discriminator on a batch of real pairs and as many generated
ones (both augmented the same way), then the generator, then the generator's EMA
copy, which is the one saved and sampled from.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from opacus.accountants import RDPAccountant
from tqdm.auto import tqdm

from thyrokit.synth.augment import diff_augment
from thyrokit.synth.checkpoint import fingerprint, is_due, load_checkpoint, restore, save_checkpoint, snapshot
from thyrokit.synth.curves import LossCurves
from thyrokit.synth.config import DataConfig, GanConfig, read_config, to_dict, write_config
from thyrokit.synth.data import PatchSet, labels_of, num_labels, to_tensor
from thyrokit.synth.gan import Discriminator, Generator, update_ema
from thyrokit.synth.privacy import make_private, per_sample_grads_off, poisson_batch, privacy_report, write_privacy

WEIGHTS = "generator.pt"


def set_requires_grad(model: torch.nn.Module, flag: bool) -> None:
    """Switch gradients of every parameter of `model` on or off."""
    for parameter in model.parameters():
        parameter.requires_grad_(flag)


def discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Hinge loss, averaged over real and fake samples together (one per-sample term each, for DP-SGD)."""
    terms = torch.cat([torch.relu(1 - real_scores), torch.relu(1 + fake_scores)])
    return terms.mean()


def train_gan(patches: PatchSet, data_config: DataConfig, config: GanConfig, out_dir: str | os.PathLike,
              live_dir: str | os.PathLike, device: torch.device,
              checkpoint: str | os.PathLike | None = None) -> dict[str, float]:
    """Train the conditional GAN on `patches`; save the EMA generator to `out_dir`; return final metrics."""
    out_dir = Path(out_dir)
    pairs = to_tensor(patches.images, patches.masks)
    labels = torch.from_numpy(labels_of(patches.rows, data_config.classes))
    count, labels_total = len(pairs), num_labels(data_config.classes)
    private = config.privacy.enabled

    torch.manual_seed(data_config.seed)
    generator = Generator(data_config.size, labels_total, config.z_dim, config.channels).to(device)
    discriminator = Discriminator(data_config.size, labels_total, config.channels, spectral=not private).to(device)
    ema = copy.deepcopy(generator).eval()
    optimizer_g = torch.optim.Adam(generator.parameters(), config.lr_generator, betas=(0.0, 0.9))
    optimizer_d = torch.optim.Adam(discriminator.parameters(), config.lr_discriminator, betas=(0.0, 0.9))
    batch_rng = torch.Generator().manual_seed(data_config.seed + 1)
    augment_rng = torch.Generator().manual_seed(data_config.seed + 2)
    noise_rng = torch.Generator().manual_seed(data_config.seed + 3)
    privacy_rng = torch.Generator().manual_seed(data_config.seed + 4)
    sample_rate = min(1.0, config.batch_size / count)
    accountant = RDPAccountant()
    scored = discriminator
    if private:
        scored, optimizer_d = make_private(discriminator, optimizer_d, config.privacy, 2 * config.batch_size,
                                           privacy_rng)

    key = fingerprint({"data": to_dict(data_config), "gan": to_dict(config)},
                      patches.images, patches.masks, labels.numpy())
    parts = {"generator": generator, "discriminator": discriminator, "ema": ema,
             "optimizer_g": optimizer_g, "optimizer_d": optimizer_d}
    rngs = (batch_rng, augment_rng, noise_rng, privacy_rng)
    state = load_checkpoint(checkpoint, key)
    start = 0
    if state is not None:
        start = restore(state, parts, rngs)
        accountant.history = list(state["accountant"])
    curves = LossCurves(live_dir, "gan", state["curves"] if state else [])

    for step in tqdm(range(start, config.steps), desc="gan", initial=start, total=config.steps, disable=None):
        generator.train()
        if private:
            real_index = poisson_batch(count, sample_rate, batch_rng)
        else:
            real_index = torch.randint(0, count, (config.batch_size,), generator=batch_rng)
        real, real_labels = pairs[real_index].to(device), labels[real_index].to(device)
        # Fake labels follow the training label frequencies, independent of the real batch.
        fake_labels = labels[torch.randint(0, count, (config.batch_size,), generator=batch_rng)].to(device)
        z = torch.randn(config.batch_size, config.z_dim, generator=noise_rng).to(device)

        set_requires_grad(discriminator, True)
        fake = generator(z, fake_labels).detach()
        both = diff_augment(torch.cat([real, fake]), config.diffaugment, augment_rng)
        scores = scored(both, torch.cat([real_labels, fake_labels]))
        loss_d = discriminator_loss(scores[:len(real)], scores[len(real):])
        optimizer_d.zero_grad(set_to_none=True)
        loss_d.backward()
        optimizer_d.step()
        if private:
            accountant.step(noise_multiplier=config.privacy.noise_multiplier, sample_rate=sample_rate)

        set_requires_grad(discriminator, False)
        fake = diff_augment(generator(z, fake_labels), config.diffaugment, augment_rng)
        optimizer_g.zero_grad(set_to_none=True)
        with per_sample_grads_off(scored):
            loss_g = -scored(fake, fake_labels).mean()
            loss_g.backward()
        optimizer_g.step()
        update_ema(ema, generator, config.ema_decay)

        done = step + 1
        if is_due(done, config.log_every, config.steps):
            curves.log(done, {"loss_d": loss_d.item(), "loss_g": loss_g.item()})
        if checkpoint is not None and is_due(done, config.checkpoint_every, config.steps):
            save_checkpoint(checkpoint, snapshot(key, done, parts, rngs, accountant=list(accountant.history),
                                                 curves=curves.history))
    curves.finish()

    save_checkpoint(out_dir / WEIGHTS, {name: value.cpu() for name, value in ema.state_dict().items()})
    write_config(out_dir / "config.json", data=data_config, gan=config)
    report = privacy_report(config.privacy, accountant)
    write_privacy(out_dir, report)
    metrics = {"steps": config.steps, **curves.last()}
    if private:
        metrics.update(epsilon=report["epsilon"], delta=report["delta"])
    return metrics


def load_gan(folder: str | os.PathLike, device: torch.device) -> tuple[Generator, DataConfig]:
    """Load a saved EMA generator and the data config it was trained with."""
    folder = Path(folder)
    data_config = read_config(folder / "config.json", "data", DataConfig)
    config = read_config(folder / "config.json", "gan", GanConfig)
    generator = Generator(data_config.size, num_labels(data_config.classes), config.z_dim, config.channels)
    generator.load_state_dict(torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True))
    return generator.to(device).eval(), data_config

