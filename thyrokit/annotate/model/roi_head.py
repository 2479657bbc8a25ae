"""The pathology head: a small CNN on a crop of the finer image around the nodule.

At the segmentation network's 64 px a 10 mm nodule is a dozen pixels: its margin,
its echogenic foci and most of its echo texture are gone. The head therefore looks at
the nodule in the detail image (the same frame at a finer size, 256 px by default),
cut out around the nodule the mask points at. The box is square, so a
taller-than-wide nodule still looks taller than wide in the crop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from thyrokit.annotate.model.blocks import conv_block

MIN_HALF_SIDE = 0.08  # the smallest box, in half-sides of the frame: about 5 px of a 64 px image
CONTEXT = 3.0         # box half-side in standard deviations of the nodule's mask: the nodule and its rim


def nodule_box(weight: torch.Tensor) -> torch.Tensor:
    """Return a square box ``(B, 3)``: centre x, centre y and half-side, in [-1, 1] frame coordinates.

    The centre is the mean position under the ``(B, 1, H, W)`` weight (a soft mask);
    the half-side is CONTEXT times its larger standard deviation (an evenly filled
    ellipse reaches 2 of them), at least MIN_HALF_SIDE and at most the whole frame.
    A frame with no weight at all gives the whole frame.
    """
    batch, _, height, width = weight.shape
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, device=weight.device).view(1, height, 1)
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, device=weight.device).view(1, 1, width)
    weight = weight[:, 0] + 1e-6  # an empty map becomes an even one: the whole frame
    total = weight.sum(dim=(1, 2))
    centre_x = (weight * xs).sum(dim=(1, 2)) / total
    centre_y = (weight * ys).sum(dim=(1, 2)) / total
    spread_x = ((weight * (xs - centre_x.view(-1, 1, 1)) ** 2).sum(dim=(1, 2)) / total).sqrt()
    spread_y = ((weight * (ys - centre_y.view(-1, 1, 1)) ** 2).sum(dim=(1, 2)) / total).sqrt()
    half = (CONTEXT * torch.maximum(spread_x, spread_y)).clamp(MIN_HALF_SIDE, 1.0)
    return torch.stack([centre_x, centre_y, half], dim=1)


def outline(mask: torch.Tensor) -> torch.Tensor:
    """Return the 0/1 outline of the likeliest nodule of a ``(B, 1, H, W)`` soft mask: pixels at least half its peak.

    A true mask is its own outline. For a predicted one, its faint haze over the whole
    frame outweighed the nodule and pulled the box to the frame, and a head trained on
    true (0/1) masks read soft ones as something else: held-out AUC fell below chance.
    """
    return (mask >= 0.5 * mask.amax(dim=(2, 3), keepdim=True)).to(mask.dtype)


def crop_box(image: torch.Tensor, box: torch.Tensor, size: int) -> torch.Tensor:
    """Return the ``(B, C, size, size)`` crops of ``(B, C, H, W)`` images at boxes from :func:`nodule_box`.

    Boxes are in frame coordinates, so the same box cuts the same region out of the
    frame at any resolution; outside the frame reads as zero.
    """
    theta = torch.zeros(image.shape[0], 2, 3, device=image.device, dtype=image.dtype)
    theta[:, 0, 0] = box[:, 2]
    theta[:, 1, 1] = box[:, 2]
    theta[:, 0, 2] = box[:, 0]
    theta[:, 1, 2] = box[:, 1]
    grid = F.affine_grid(theta, [image.shape[0], image.shape[1], size, size], align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class RoiPathologyHead(nn.Module):
    """Malignancy logit ``(B,)`` of the nodule a soft mask marks, from its crop of the detail image.

    The crop's two channels are the detail image and the mask, so the head sees the
    nodule's echoes and its outline (shape, margin) together.
    """

    def __init__(self, size: int = 32, channels: int = 8, dropout: float = 0.2):
        super().__init__()
        self.size = size
        widths = [channels, channels * 2, channels * 4]
        layers: list[nn.Module] = []
        in_channels = 2
        for width in widths:
            layers += [conv_block(in_channels, width), nn.MaxPool2d(2)]
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.classify = nn.Sequential(nn.Dropout(dropout), nn.Linear(widths[-1], 1))

    def forward(self, detail: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = outline(mask)
        box = nodule_box(mask)
        crop = torch.cat([crop_box(detail, box, self.size), crop_box(mask, box, self.size)], dim=1)
        return self.classify(self.features(crop).mean(dim=(2, 3))).squeeze(1)
