"""Weak (geometric) and strong (photometric) augmentations of image batches, and CutMix, in torch.

Weak augmentations move pixels, so they are applied to an image and its mask alike.
Strong ones change only intensities and blank out a patch, so a mask or pseudolabel
made on the weak view still lines up with the strong view (FixMatch's pairing).
CutMix pastes a box of one image over another, and the same box of its target over
the other's target, so the pair still lines up too.
Every random draw comes from the `generator` passed in, so a seed fixes them all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator,
             device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator).to(device)


def weak_augment(image: torch.Tensor, mask: torch.Tensor | None, generator: torch.Generator,
                 max_shift: float = 0.1) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Flip left-right at random and shift by up to `max_shift` of the side, image and mask alike."""
    batch, _, height, width = image.shape
    flip = (torch.rand(batch, generator=generator) < 0.5).to(image.device).view(batch, 1, 1, 1)
    shifts = _uniform((batch, 2), -max_shift, max_shift, generator, image.device)
    # An affine grid with only a translation: the same grid moves image and mask.
    theta = torch.zeros(batch, 2, 3, device=image.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, :, 2] = 2 * shifts

    def move(tensor: torch.Tensor, mode: str) -> torch.Tensor:
        tensor = torch.where(flip, tensor.flip(-1), tensor)
        grid = F.affine_grid(theta, list(tensor.shape), align_corners=False)
        return F.grid_sample(tensor, grid, mode=mode, padding_mode="reflection", align_corners=False)

    moved_mask = move(mask, "nearest") if mask is not None else None
    return move(image, "bilinear"), moved_mask


def strong_augment(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Jitter brightness, contrast and gamma, add speckle noise, and blank one square."""
    batch, _, height, width = image.shape
    device = image.device
    shape = (batch, 1, 1, 1)
    contrast = _uniform(shape, 0.6, 1.4, generator, device)
    brightness = _uniform(shape, -0.15, 0.15, generator, device)
    gamma = _uniform(shape, 0.7, 1.4, generator, device)
    mean = image.mean(dim=(2, 3), keepdim=True)
    out = ((image - mean) * contrast + mean + brightness).clamp(0, 1) ** gamma
    speckle = 1 + 0.15 * torch.randn(image.shape, generator=generator).to(device)
    out = (out * speckle).clamp(0, 1)
    side = max(1, height // 4)
    rows = torch.randint(0, height - side + 1, (batch,), generator=generator).tolist()
    cols = torch.randint(0, width - side + 1, (batch,), generator=generator).tolist()
    for index, (row, col) in enumerate(zip(rows, cols)):
        out[index, :, row:row + side, col:col + side] = mean[index]
    return out


def cut_mix(images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator,
            area: tuple[float, float] = (0.25, 0.5)) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste a random box of each image and its target over the previous image's and target's in the batch.

    Each box has the image's aspect ratio and covers a share of it drawn from `area`;
    image ``i`` gives the box, image ``i - 1`` (cyclically) the rest.
    """
    batch, _, height, width = images.shape
    side = _uniform((batch,), area[0], area[1], generator, torch.device("cpu")).sqrt()
    box_height, box_width = (side * height).round().long(), (side * width).round().long()
    top = (torch.rand(batch, generator=generator) * (height - box_height + 1)).long()
    left = (torch.rand(batch, generator=generator) * (width - box_width + 1)).long()
    rows = torch.arange(height).view(1, height, 1)
    columns = torch.arange(width).view(1, 1, width)
    inside = ((rows >= top.view(-1, 1, 1)) & (rows < (top + box_height).view(-1, 1, 1))
              & (columns >= left.view(-1, 1, 1)) & (columns < (left + box_width).view(-1, 1, 1)))
    inside = inside.unsqueeze(1).to(images.device)
    rest = torch.roll(torch.arange(batch, device=images.device), 1)
    return torch.where(inside, images, images[rest]), torch.where(inside, targets, targets[rest])
