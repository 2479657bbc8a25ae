"""Training the conditional diffusion model: DDPM noise prediction with label dropout.

With ``privacy.enabled`` the UNet is trained with DP-SGD (Opacus supports every layer
of the UNet2DModel built here, attention included) on Poisson-sampled batches.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from opacus.accountants import RDPAccountant
from tqdm.auto import tqdm

from thyrokit.synth.checkpoint import fingerprint, is_due, load_checkpoint, restore, save_checkpoint, snapshot
from thyrokit.synth.config import DataConfig, DiffusionConfig, to_dict, write_config
from thyrokit.synth.curves import LossCurves
from thyrokit.synth.data import PatchSet, labels_of, num_labels, to_tensor
from thyrokit.synth.diffusion import (diffusion_loss, drop_labels, make_train_scheduler, make_unet, null_label,
                                      save_diffusion)
from thyrokit.synth.privacy import make_private, poisson_batch, privacy_report, write_privacy


def train_diffusion(patches: PatchSet, data_config: DataConfig, config: DiffusionConfig,
                    out_dir: str | os.PathLike, live_dir: str | os.PathLike, device: torch.device,
                    checkpoint: str | os.PathLike | None = None) -> dict[str, float]:
    """Train the class-conditional UNet on `patches`; save it to `out_dir`; return final metrics."""
    pairs = to_tensor(patches.images, patches.masks)
    labels = torch.from_numpy(labels_of(patches.rows, data_config.classes))
    count, private = len(pairs), config.privacy.enabled

    torch.manual_seed(data_config.seed)
    unet = make_unet(data_config.size, num_labels(data_config.classes), config).to(device)
    scheduler = make_train_scheduler(config)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.lr)
    batch_rng = torch.Generator().manual_seed(data_config.seed + 1)
    noise_rng = torch.Generator().manual_seed(data_config.seed + 3)
    privacy_rng = torch.Generator().manual_seed(data_config.seed + 4)
    sample_rate = min(1.0, config.batch_size / count)
    accountant = RDPAccountant()
    trained = unet
    if private:
        trained, optimizer = make_private(unet, optimizer, config.privacy, config.batch_size, privacy_rng)

    key = fingerprint({"data": to_dict(data_config), "diffusion": to_dict(config)},
                      patches.images, patches.masks, labels.numpy())
    parts, rngs = {"unet": unet, "optimizer": optimizer}, (batch_rng, noise_rng, privacy_rng)
    state = load_checkpoint(checkpoint, key)
    start = 0
    if state is not None:
        start = restore(state, parts, rngs)
        accountant.history = list(state["accountant"])
    curves = LossCurves(live_dir, "diffusion", state["curves"] if state else [])

    for step in tqdm(range(start, config.steps), desc="diffusion", initial=start, total=config.steps,
                     disable=None):
        unet.train()
        if private:
            index = poisson_batch(count, sample_rate, batch_rng)
        else:
            index = torch.randint(0, count, (config.batch_size,), generator=batch_rng)
        batch_labels = drop_labels(labels[index], null_label(unet), config.label_dropout, batch_rng)
        batch_loss = diffusion_loss(trained, scheduler, pairs[index].to(device), batch_labels.to(device),
                                    noise_rng)
        optimizer.zero_grad(set_to_none=True)
        batch_loss.backward()
        optimizer.step()
        if private:
            accountant.step(noise_multiplier=config.privacy.noise_multiplier, sample_rate=sample_rate)

        done = step + 1
        if is_due(done, config.log_every, config.steps):
            curves.log(done, {"loss": batch_loss.item()})
        if checkpoint is not None and is_due(done, config.checkpoint_every, config.steps):
            save_checkpoint(checkpoint, snapshot(key, done, parts, rngs, accountant=list(accountant.history),
                                                 curves=curves.history))
    curves.finish()

    save_diffusion(out_dir, unet.to("cpu"), scheduler)
    write_config(Path(out_dir) / "config.json", data=data_config, diffusion=config)
    report = privacy_report(config.privacy, accountant)
    write_privacy(out_dir, report)
    metrics = {"steps": config.steps, **curves.last()}
    if private:
        metrics.update(epsilon=report["epsilon"], delta=report["delta"])
    return metrics
