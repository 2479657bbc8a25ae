"""A small U-Net with two heads: a foreground mask and the image's pathology."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Encoder-decoder with skip connections, a per-pixel nodule logit and a malignancy logit.

    The input is a grey image ``(B, 1, S, S)`` with ``S`` divisible by ``2**depth``.
    ``forward`` returns ``(mask_logits (B, 1, S, S), malignant_logit (B,))``. Dropout
    sits before the bottleneck and the pathology head, so it can be left on at
    inference (MC dropout) to measure how unsure the model is.

    The pathology head reads the features of every decoder level (and the bottleneck)
    averaged over the predicted nodule, not over the whole image: pooled over the
    whole frame, a few hundred labels teach it the scanner and the patient rather
    than the nodule (held-out AUC near chance on the demo phantom).
    """

    def __init__(self, channels: int = 8, depth: int = 3, dropout: float = 0.2):
        super().__init__()
        widths = [channels * 2**level for level in range(depth + 1)]
        self.encoders = nn.ModuleList()
        in_channels = 1
        for width in widths[:-1]:
            self.encoders.append(conv_block(in_channels, width))
            in_channels = width
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout2d(dropout)
        self.bottleneck = conv_block(widths[-2], widths[-1])
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for width, skip in zip(reversed(widths[1:]), reversed(widths[:-1])):
            self.upsamplers.append(nn.ConvTranspose2d(width, skip, 2, stride=2))
            self.decoders.append(conv_block(2 * skip, skip))
        self.mask_head = nn.Conv2d(widths[0], 1, 1)
        self.pathology_head = nn.Sequential(nn.Dropout(dropout), nn.Linear(sum(widths), 1))
        self.divisor = 2**depth

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if image.shape[-1] % self.divisor or image.shape[-2] % self.divisor:
            raise ValueError(f"image side must be divisible by {self.divisor}, got {tuple(image.shape)}")
        skips = []
        features = image
        for encoder in self.encoders:
            features = encoder(features)
            skips.append(features)
            features = self.pool(features)
        features = self.bottleneck(self.dropout(features))
        levels = [features]
        for upsample, decoder, skip in zip(self.upsamplers, self.decoders, reversed(skips)):
            features = decoder(torch.cat([upsample(features), skip], dim=1))
            levels.append(features)
        mask_logits = self.mask_head(features)
        # Detached: the pathology loss must not redraw the outline to suit itself.
        nodule = torch.sigmoid(mask_logits).detach()
        pooled = torch.cat([masked_mean(level, nodule) for level in levels], dim=1)
        return mask_logits, self.pathology_head(pooled).squeeze(1)


def masked_mean(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Average ``(B, C, H, W)`` features over a ``(B, 1, S, S)`` soft mask resized to (H, W)."""
    weight = F.adaptive_avg_pool2d(weight, features.shape[-2:])
    return (features * weight).sum(dim=(2, 3)) / weight.sum(dim=(2, 3)).clamp(min=1e-3)


def enable_dropout(model: nn.Module) -> None:
    """Put only the dropout layers of an evaluating model back in training mode (MC dropout)."""
    for module in model.modules():
        if isinstance(module, (nn.Dropout, nn.Dropout2d)):
            module.train()
