"""DiffAugment (Zhao et al., 2020): differentiable augmentation for GANs on small data.

The same random transform is applied to real and fake batches before the discriminator
sees them, so it cannot memorise the few real patches and the generator still gets
gradients through the transform. Channel 0 is the patch, channel 1 its mask: geometric
transforms move both together, intensity transforms touch only the patch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F


def _uniform(batch: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(batch.shape[0], 1, 1, generator=generator, device="cpu").to(batch.device)


def brightness(batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each patch's intensity by up to +-0.5 (of the [-1, 1] range)."""
    shift = _uniform(batch, generator) - 0.5
    return torch.cat([batch[:, :1] + shift.unsqueeze(1), batch[:, 1:]], dim=1)


def contrast(batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Scale each patch's intensity about its mean by 0.5-1.5."""
    factor = (_uniform(batch, generator) + 0.5).unsqueeze(1)
    image = batch[:, :1]
    mean = image.mean(dim=(1, 2, 3), keepdim=True)
    return torch.cat([(image - mean) * factor + mean, batch[:, 1:]], dim=1)


def translation(batch: torch.Tensor, generator: torch.Generator | None = None, ratio: float = 0.125) -> torch.Tensor:
    """Shift each pair by up to `ratio` of its side, padding with the background value -1."""
    n, _, height, width = batch.shape
    limit = int(height * ratio + 0.5)
    shifts = torch.randint(-limit, limit + 1, (n, 2), generator=generator, device="cpu")
    padded = F.pad(batch + 1, (limit, limit, limit, limit)) - 1
    rows = (torch.arange(height).view(1, height) + limit - shifts[:, :1]).to(batch.device)
    cols = (torch.arange(width).view(1, width) + limit - shifts[:, 1:]).to(batch.device)
    index = torch.arange(n, device=batch.device).view(n, 1, 1)
    # Gather per-sample windows: (n, H, W, C) then back to (n, C, H, W).
    moved = padded.permute(0, 2, 3, 1)[index, rows.view(n, height, 1), cols.view(n, 1, width)]
    return moved.permute(0, 3, 1, 2).contiguous()


def cutout(batch: torch.Tensor, generator: torch.Generator | None = None, ratio: float = 0.5) -> torch.Tensor:
    """Blank a random square of `ratio` x the side in each pair (patch and mask alike)."""
    n, _, height, width = batch.shape
    side = int(height * ratio + 0.5)
    corners = torch.randint(0, height - side + 1, (n, 2), generator=generator, device="cpu").to(batch.device)
    rows = torch.arange(height, device=batch.device).view(1, height, 1)
    cols = torch.arange(width, device=batch.device).view(1, 1, width)
    inside = ((rows >= corners[:, :1, None]) & (rows < corners[:, :1, None] + side)
              & (cols >= corners[:, 1:, None]) & (cols < corners[:, 1:, None] + side))
    return torch.where(inside.unsqueeze(1), torch.full_like(batch, -1.0), batch)


AUGMENTATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "brightness": brightness,
    "contrast": contrast,
    "translation": translation,
    "cutout": cutout,
}


def diff_augment(batch: torch.Tensor, policy: Sequence[str], generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the named augmentations in order, each with fresh randomness per sample."""
    unknown = sorted(set(policy) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown DiffAugment transform(s) {unknown}; known: {sorted(AUGMENTATIONS)}")
    for name in policy:
        batch = AUGMENTATIONS[name](batch, generator)
    return batch
