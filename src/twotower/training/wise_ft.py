"""WiSE-FT (Wortsman et al. 2022, "Robust fine-tuning of zero-shot models"): the trained weights
moved back towards the base model's, ``ratio`` of the way from the base.

A residual adapter (twotower.models.adapter) has no base weights: its base is the identity, so
the same ratio scales its residual instead, and its weights are left as trained.
"""

from __future__ import annotations

from twotower.models.adapter import ResidualAdapter


def _adapter_parameters(model) -> set[int]:
    return {
        id(p)
        for module in model.modules()
        if isinstance(module, ResidualAdapter)
        for p in module.parameters()
    }


def base_weights(model) -> dict:
    """Copies of the trainable weights WiSE-FT interpolates (adapters' excluded)."""
    skip = _adapter_parameters(model)
    return {
        name: p.detach().clone()
        for name, p in model.named_parameters()
        if p.requires_grad and id(p) not in skip
    }


def interpolate(model, base: dict, ratio: float) -> None:
    """``ratio`` · trained + (1 − ratio) · ``base`` for each weight in ``base``; each adapter's
    residual scaled by ``ratio``."""
    import torch

    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in base:
                parameter.mul_(ratio).add_(base[name].to(parameter.device), alpha=1 - ratio)
    for module in model.modules():
        if isinstance(module, ResidualAdapter):
            module.residual_scale *= ratio


__all__ = ["base_weights", "interpolate"]
