"""A conditional GAN for (patch, mask) pairs: a conditional-BatchNorm generator and a
projection discriminator (Miyato & Koyama, 2018) with spectral normalisation.

The generator maps a latent vector and a conditioning label to a 2-channel pair in
[-1, 1]; the label sets each BatchNorm's scale and shift. The discriminator scores a
pair as ``psi(h) + <embed(label), h>``, where ``h`` are pooled features.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from thyrokit.synth.seeding import seeded_normal

BASE_SIZE = 4


def _stages(size: int) -> int:
    stages = int(math.log2(size // BASE_SIZE))
    if size < 8 or BASE_SIZE * 2**stages != size:
        raise ValueError(f"GAN patch size must be a power of two >= 8, got {size}")
    return stages


class ConditionalBatchNorm(nn.Module):
    """BatchNorm whose scale and shift are looked up from the conditioning label."""

    def __init__(self, channels: int, num_labels: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.scale = nn.Embedding(num_labels, channels)
        self.shift = nn.Embedding(num_labels, channels)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        scale = self.scale(labels)[:, :, None, None]
        shift = self.shift(labels)[:, :, None, None]
        return self.norm(x) * scale + shift


class GeneratorBlock(nn.Module):
    """Upsample x2 with a residual connection; conditional BatchNorm before each conv."""

    def __init__(self, in_channels: int, out_channels: int, num_labels: int):
        super().__init__()
        self.norm1 = ConditionalBatchNorm(in_channels, num_labels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = ConditionalBatchNorm(out_channels, num_labels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.up(torch.relu(self.norm1(x, labels)))
        h = self.conv2(torch.relu(self.norm2(self.conv1(h), labels)))
        return h + self.skip(self.up(x))


class Generator(nn.Module):
    """Latent vector + label -> (patch, mask) pair of shape (2, size, size) in [-1, 1]."""

    def __init__(self, size: int, num_labels: int, z_dim: int = 64, channels: int = 64):
        super().__init__()
        stages = _stages(size)
        self.z_dim = z_dim
        self.channels = channels
        self.project = nn.Linear(z_dim, channels * BASE_SIZE * BASE_SIZE)
        widths = [max(channels // 2**i, 16) for i in range(stages + 1)]
        self.blocks = nn.ModuleList(
            GeneratorBlock(widths[i], widths[i + 1], num_labels) for i in range(stages)
        )
        self.out = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(), nn.Conv2d(widths[-1], 2, 3, padding=1), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(-1, self.channels, BASE_SIZE, BASE_SIZE)
        for block in self.blocks:
            h = block(h, labels)
        return self.out(h)


class DiscriminatorBlock(nn.Module):
    """Two convolutions and a x2 downsample, with a residual connection."""

    def __init__(self, in_channels: int, out_channels: int, normalise):
        super().__init__()
        self.conv1 = normalise(nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.conv2 = normalise(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = normalise(nn.Conv2d(in_channels, out_channels, 1))
        self.down = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(torch.relu(self.conv1(torch.relu(x))))
        return self.down(h) + self.down(self.skip(x))


class Discriminator(nn.Module):
    """(patch, mask) pair + label -> realness score, with a class projection term.

    ``spectral=False`` drops spectral normalisation, which Opacus cannot compute
    per-sample gradients through; DP-SGD's gradient clipping bounds the
    discriminator instead.
    """

    def __init__(self, size: int, num_labels: int, channels: int = 64, spectral: bool = True):
        super().__init__()
        stages = _stages(size)
        normalise = spectral_norm if spectral else (lambda module: module)
        widths = [2] + [min(channels, 16 * 2**i) for i in range(stages)]
        self.blocks = nn.Sequential(
            *(DiscriminatorBlock(widths[i], widths[i + 1], normalise) for i in range(stages))
        )
        self.score = normalise(nn.Linear(widths[-1], 1))
        self.embed = normalise(nn.Embedding(num_labels, widths[-1]))

    def forward(self, pairs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.blocks(pairs)).sum(dim=(2, 3))
        return self.score(h).squeeze(1) + (self.embed(labels) * h).sum(dim=1)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """Move `ema`'s weights a step towards `model`'s, and copy its BatchNorm statistics."""
    for ema_param, param in zip(ema.parameters(), model.parameters()):
        ema_param.lerp_(param, 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers()):
        ema_buffer.copy_(buffer)


@torch.no_grad()
def generate(generator: Generator, labels: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    """Return one (2, S, S) pair per label, each from the latent drawn with its own seed."""
    device = next(generator.parameters()).device
    z = seeded_normal(seeds, (generator.z_dim,)).to(device)
    generator.eval()
    return generator(z, labels.to(device)).cpu()
