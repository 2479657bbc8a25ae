"""A class-conditional diffusion model for (patch, mask) pairs: diffusers' UNet2DModel,
trained as DDPM and sampled with DDIM and classifier-free guidance.

The UNet gets one class embedding per conditioning label plus a last "null" label;
training replaces a fraction of labels with the null one, so one network learns both
the conditional and the unconditional noise prediction. Sampling mixes the two:
``eps = eps_null + w * (eps_label - eps_null)``. DDIM is used because DPMSolver
diverged on models this small unless thresholding was on; DDIM was stable.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from thyrokit.synth.config import DiffusionConfig
from thyrokit.synth.seeding import seeded_normal

UNET_FOLDER = "unet"
SCHEDULER_FOLDER = "scheduler"


def make_unet(size: int, num_labels: int, config: DiffusionConfig) -> UNet2DModel:
    """Return a fresh UNet2DModel for 2-channel pairs with `num_labels` + 1 (null) class embeddings."""
    resolutions = [size // 2**i for i in range(len(config.block_out_channels))]
    attention = [resolution <= config.attention_max_resolution for resolution in resolutions]
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention))
    return UNet2DModel(
        sample_size=size,
        in_channels=2,
        out_channels=2,
        block_out_channels=tuple(config.block_out_channels),
        down_block_types=down,
        up_block_types=up,
        layers_per_block=config.layers_per_block,
        norm_num_groups=8,
        attention_head_dim=8,
        add_attention=attention[-1],
        num_class_embeds=num_labels + 1,
    )


def make_train_scheduler(config: DiffusionConfig) -> DDPMScheduler:
    """Return the DDPM noise schedule used for training."""
    return DDPMScheduler(num_train_timesteps=config.train_timesteps, beta_schedule="squaredcos_cap_v2")


def null_label(unet: UNet2DModel) -> int:
    """Return the label index that means "no condition"."""
    return unet.config.num_class_embeds - 1


def drop_labels(labels: torch.Tensor, null: int, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Replace a `rate` fraction of labels with the null label (classifier-free guidance training)."""
    drop = torch.rand(labels.shape, generator=generator) < rate
    return torch.where(drop.to(labels.device), torch.full_like(labels, null), labels)


def diffusion_loss(unet: UNet2DModel, scheduler: DDPMScheduler, clean: torch.Tensor, labels: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
    """Return the DDPM noise-prediction loss of one batch."""
    noise = torch.randn(clean.shape, generator=generator).to(clean.device)
    steps = torch.randint(0, scheduler.config.num_train_timesteps, (clean.shape[0],), generator=generator)
    steps = steps.to(clean.device)
    noisy = scheduler.add_noise(clean, noise, steps)
    predicted = unet(noisy, steps, class_labels=labels).sample
    return torch.nn.functional.mse_loss(predicted, noise)


@torch.no_grad()
def sample(unet: UNet2DModel, scheduler: DDIMScheduler, labels: torch.Tensor, seeds: list[int],
           inference_steps: int, guidance_scale: float) -> torch.Tensor:
    """Return one (2, S, S) pair per label by DDIM with classifier-free guidance, each from its own seed's noise."""
    device = next(unet.parameters()).device
    size = unet.config.sample_size
    x = seeded_normal(seeds, (2, size, size)).to(device)
    labels = labels.to(device)
    both = torch.cat([labels, torch.full_like(labels, null_label(unet))])
    unet.eval()
    scheduler.set_timesteps(inference_steps)
    for step in scheduler.timesteps:
        predicted = unet(torch.cat([x, x]), step, class_labels=both).sample
        conditional, unconditional = predicted.chunk(2)
        guided = unconditional + guidance_scale * (conditional - unconditional)
        x = scheduler.step(guided, step, x, eta=0.0).prev_sample
    return x.clamp(-1, 1).cpu()


def save_diffusion(folder: str | os.PathLike, unet: UNet2DModel, scheduler: DDPMScheduler) -> None:
    """Save the UNet and its noise schedule with save_pretrained (safetensors, no hub)."""
    folder = Path(folder)
    unet.save_pretrained(folder / UNET_FOLDER)
    scheduler.save_pretrained(folder / SCHEDULER_FOLDER)


def load_diffusion(folder: str | os.PathLike, device: torch.device) -> tuple[UNet2DModel, DDIMScheduler]:
    """Load a saved UNet and a DDIM sampler on its training schedule, from a local folder only."""
    folder = Path(folder)
    unet = UNet2DModel.from_pretrained(folder / UNET_FOLDER, local_files_only=True, low_cpu_mem_usage=False).to(device)
    scheduler = DDIMScheduler.from_pretrained(folder / SCHEDULER_FOLDER, local_files_only=True)
    return unet, scheduler
