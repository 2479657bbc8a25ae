"""DP-SGD with Opacus for the model that sees real patches (the GAN's discriminator).

Only the discriminator touches real data; the generator learns from its gradients,
so by post-processing the generator is as private as the discriminator. Batches of
real patches are drawn by Poisson sampling (each patch independently, with rate
q = batch / N), which is what the RDP accountant's epsilon assumes.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from opacus import GradSampleModule
from opacus.accountants import RDPAccountant
from opacus.optimizers import DPOptimizer
from opacus.validators import ModuleValidator
from torch import nn

from thyrokit.synth.config import PrivacyConfig

# Opacus hooks every layer for backward; torch warns that the discriminator's first layer
# gets no input gradient in the discriminator's own step, which is expected and harmless.
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
