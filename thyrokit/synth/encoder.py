"""A small patch classifier: its pathology head measures utility, its features measure fidelity.

Inception weights cannot be downloaded here, so fidelity (KID, FID, precision/recall)
and memorisation use the penultimate features of this network instead, trained in
project on real train-split patches to tell benign from malignant. Features from a
network trained on the task itself are what a downstream model would "see"; numbers
are comparable between generators and dataset versions, not with published
Inception-based figures.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from thyrokit.synth.checkpoint import save_checkpoint
from thyrokit.synth.config import EncoderConfig

WEIGHTS = "encoder.pt"


class PatchClassifier(nn.Module):
    """Grey patch -> benign/malignant logits, through a `width`-based conv stack and global pooling."""

    def __init__(self, width: int = 16, num_classes: int = 2):
        super().__init__()
        layers, channels = [], 1
        for multiple in (1, 2, 4):
            layers += [nn.Conv2d(channels, width * multiple, 3, padding=1), nn.GroupNorm(4, width * multiple),
                       nn.ReLU(), nn.MaxPool2d(2)]
            channels = width * multiple
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Return pooled penultimate features of (N, 1, S, S) images in [-1, 1]."""
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images))


def to_input(images: np.ndarray) -> torch.Tensor:
    """Return uint8 (N, S, S) patches as a (N, 1, S, S) float tensor in [-1, 1]."""
    return torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).unsqueeze(1)


def train_classifier(images: np.ndarray, classes: np.ndarray, config: EncoderConfig, seed: int,
                     device: torch.device, desc: str = "classifier") -> PatchClassifier:
    """Train a PatchClassifier on uint8 patches and 0/1 class indices, with flips as augmentation."""
    if len(np.unique(classes)) < 2:
        raise ValueError(f"{desc}: needs patches of both classes to train, got only {np.unique(classes).tolist()}")
    torch.manual_seed(seed)
    model = PatchClassifier(config.width).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    rng = torch.Generator().manual_seed(seed)
    inputs, targets = to_input(images), torch.from_numpy(classes.astype(np.int64))
    model.train()
    for _ in tqdm(range(config.steps), desc=desc, disable=None):
        index = torch.randint(0, len(inputs), (config.batch_size,), generator=rng)
        batch = inputs[index]
        flip = torch.rand(len(batch), generator=rng) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
        loss = nn.functional.cross_entropy(model(batch.to(device)), targets[index].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def encode(model: PatchClassifier, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Return the (N, D) float64 features of uint8 patches."""
    device = next(model.parameters()).device
    model.eval()
    parts = [model.features(to_input(images[i:i + batch_size]).to(device)).cpu()
             for i in range(0, len(images), batch_size)]
    return torch.cat(parts).double().numpy() if parts else np.zeros((0, model.head.in_features))


@torch.no_grad()
def predict_malignant(model: PatchClassifier, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Return each patch's predicted probability of the second class (malignant)."""
    device = next(model.parameters()).device
    model.eval()
    parts = [torch.softmax(model(to_input(images[i:i + batch_size]).to(device)), dim=1)[:, 1].cpu()
             for i in range(0, len(images), batch_size)]
    return torch.cat(parts).double().numpy() if parts else np.zeros(0)


def save_encoder(folder: str | os.PathLike, model: PatchClassifier) -> None:
    """Save the encoder's weights."""
    save_checkpoint(Path(folder) / WEIGHTS, {name: value.cpu() for name, value in model.state_dict().items()})


def load_encoder(folder: str | os.PathLike, config: EncoderConfig, device: torch.device) -> PatchClassifier:
    """Load a saved encoder."""
    model = PatchClassifier(config.width)
    model.load_state_dict(torch.load(Path(folder) / WEIGHTS, map_location="cpu", weights_only=True))
    return model.to(device).eval()
