"""DP-SGD with Opacus for the model that sees real patches (the GAN's discriminator, or the UNet).

Only the discriminator touches real data; the generator learns from its gradients,
so by post-processing the generator is as private as the discriminator. The diffusion
UNet sees real data directly and is trained with DP-SGD itself. Batches of real
patches are drawn by Poisson sampling (each patch independently, with rate
q = batch / N), which is what the RDP accountant's epsilon assumes.

The budget spent is saved beside the model as ``privacy.json`` so that synth_eval
(and the dataset card) report it with the samples it vouches for.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from opacus import GradSampleModule
from opacus.accountants import RDPAccountant
from opacus.optimizers import DPOptimizer
from opacus.validators import ModuleValidator
from torch import nn

from thyrokit.atomic import write_text
from thyrokit.synth.config import PrivacyConfig

PRIVACY_FILE = "privacy.json"

# Opacus hooks every layer for backward; torch warns that the first layer gets no input
# gradient (its input is data, not a model output), which is expected and harmless.
warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed")


def make_private(model: nn.Module, optimizer: torch.optim.Optimizer, config: PrivacyConfig,
                 expected_batch_size: int, generator: torch.Generator) -> tuple[GradSampleModule, DPOptimizer]:
    """Wrap a model for per-sample gradients and its optimiser for clipping and noise."""
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise ValueError(f"model cannot be trained with DP-SGD: {errors[0]}")
    private_model = GradSampleModule(model)
    private_optimizer = DPOptimizer(
        optimizer,
        noise_multiplier=config.noise_multiplier,
        max_grad_norm=config.max_grad_norm,
        expected_batch_size=expected_batch_size,
        generator=generator,
    )
    return private_model, private_optimizer


def poisson_batch(count: int, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Return the indices of a Poisson-sampled batch: each of `count` items kept with probability `rate`."""
    return torch.nonzero(torch.rand(count, generator=generator) < rate).squeeze(1)


def epsilon(accountant: RDPAccountant, delta: float) -> float:
    """Return the privacy budget spent so far at `delta`."""
    return float(accountant.get_epsilon(delta)) if accountant.history else 0.0


@contextlib.contextmanager
def per_sample_grads_off(model: nn.Module) -> Iterator[None]:
    """Within the block, `model` (if wrapped for DP-SGD) computes no per-sample gradients.

    The generator's step backpropagates through the discriminator without updating it.
    """
    if not isinstance(model, GradSampleModule):
        yield
        return
    model.disable_hooks()
    try:
        yield
    finally:
        model.enable_hooks()


def privacy_report(config: PrivacyConfig, accountant: RDPAccountant) -> dict[str, float | bool | None]:
    """Return what DP-SGD guarantees for a trained model: enabled, epsilon, delta, noise multiplier."""
    if not config.enabled:
        return {"enabled": False, "epsilon": None, "delta": None, "noise_multiplier": None}
    return {"enabled": True, "epsilon": epsilon(accountant, config.delta), "delta": config.delta,
            "noise_multiplier": config.noise_multiplier}


def write_privacy(folder: str | os.PathLike, report: dict) -> None:
    """Save a model's privacy report beside its weights."""
    write_text(Path(folder) / PRIVACY_FILE, json.dumps(report, indent=2, sort_keys=True) + "\n")


def read_privacy(folder: str | os.PathLike, config: PrivacyConfig) -> dict:
    """Return the privacy report saved beside a model; `config` is the privacy config it was trained with.

    A model saved before reports were written is reported as non-private only if it was trained without DP.
    """
    path = Path(folder) / PRIVACY_FILE
    if path.exists():
        return json.loads(path.read_text())
    if config.enabled:
        raise ValueError(f"{folder}: trained with DP-SGD but has no {PRIVACY_FILE}; retrain it to report epsilon")
    return privacy_report(config, RDPAccountant())
