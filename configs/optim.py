"""Schemas of the ``optimizer`` group. Defaults equal torch's unless a comment says why.

The one deliberate difference: Adam and AdamW default to ``fused=True`` (torch: None, which
means the per-tensor loop on CPU). The fused kernel gives the same update and is about 3x faster
per step for RL-sized networks on CPU (benchmarks/speed.py), and it works on CUDA too.
"""

from __future__ import annotations

from dataclasses import dataclass

from configs.validation import adam_betas, between, checked, ge, gt


@dataclass(kw_only=True)
class AdamConfig:
    _target_: str = "torch.optim.Adam"
    _partial_: bool = True  # called with the loss module's parameters
    lr: float = checked(1e-3, gt(0))
    betas: tuple[float, float] = checked((0.9, 0.999), adam_betas())
    eps: float = checked(1e-8, gt(0))
    weight_decay: float = checked(0.0, ge(0))
    amsgrad: bool = False
    foreach: bool | None = None
    fused: bool | None = True  # torch: None; see the module docstring


@dataclass(kw_only=True)
class AdamWConfig:
    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True
    lr: float = checked(1e-3, gt(0))
    betas: tuple[float, float] = checked((0.9, 0.999), adam_betas())
    eps: float = checked(1e-8, gt(0))
    weight_decay: float = checked(0.01, ge(0))
    amsgrad: bool = False
    foreach: bool | None = None
    fused: bool | None = True  # torch: None; see the module docstring


@dataclass(kw_only=True)
class SGDConfig:
    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = checked(1e-3, gt(0))
    momentum: float = checked(0.0, between(0, 1))
    dampening: float = 0.0
    weight_decay: float = checked(0.0, ge(0))
    nesterov: bool = False
    foreach: bool | None = None
    fused: bool | None = None


@dataclass(kw_only=True)
class RMSpropConfig:
    _target_: str = "torch.optim.RMSprop"
    _partial_: bool = True
    lr: float = checked(1e-2, gt(0))
    alpha: float = checked(0.99, between(0, 1))
    eps: float = checked(1e-8, gt(0))
    weight_decay: float = checked(0.0, ge(0))
    momentum: float = checked(0.0, ge(0))
    centered: bool = False
    foreach: bool | None = None
