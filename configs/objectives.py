"""Schemas of the ``loss`` group and of target-network updaters."""

from __future__ import annotations

from dataclasses import dataclass

from configs.validation import between, checked, ge, gt, one_of


@dataclass(kw_only=True)
class PPOLossConfig:
    """Clipped PPO; the actor and critic are built from ``networks`` and passed in.

    ``compile``: compute each minibatch's losses as one ``torch.compile`` graph
    (``ClipPPOLoss(compile=...)``); null, the default, compiles on CPU, where it measured faster,
    and not on accelerators, where it has not been measured. Off while ``networks.compile`` is
    on (the networks are then compiled on their own).
    """

    _target_: str = "trainers.objectives.ClipPPOLoss"
    _partial_: bool = True
    clip_epsilon: float = checked(0.2, gt(0))
    entropy_bonus: bool = True
    entropy_coeff: float = checked(0.0, ge(0))
    critic_coeff: float = checked(0.5, ge(0))
    loss_critic_type: str = checked("l2", one_of("l2", "smooth_l1"))
    normalize_advantage: bool = True
    clip_value: float | None = checked(None, gt(0))
    compile: bool | None = None  # None: on CPU only


@dataclass(kw_only=True)
class SACLossConfig:
    """SAC with twin Q networks and automatic entropy temperature.

    ``fused``: compute the losses' gradients with SAC's hand-derived backward pass
    (``trainers.objectives.sac_fused``) where the networks are MLPs with ReLU or tanh, as the SAC
    configs build them: the same values and gradients as autograd, in fewer operations.
    ``compile``: run that path through ``torch.compile`` (``SACLoss(compile=...)``); null, the
    default, compiles on CPU, where it measured faster, and not on accelerators, where it has not
    been measured.
    """

    _target_: str = "trainers.objectives.SACLoss"
    _partial_: bool = True
    num_qvalue_nets: int = checked(2, ge(1))
    gamma: float = checked(0.99, between(0, 1))
    alpha_init: float = checked(1.0, gt(0))
    fixed_alpha: bool = False
    target_entropy: str = "auto"  # "auto" = -action_dim, or a number as a string
    loss_function: str = checked("l2", one_of("l2", "smooth_l1"))
    fused: bool = True
    compile: bool | None = None  # None: on CPU only


@dataclass(kw_only=True)
class SoftUpdateConfig:
    _target_: str = "trainers.objectives.SoftUpdate"
    _partial_: bool = True  # called with the loss module
    tau: float = checked(0.005, between(0, 1))


@dataclass(kw_only=True)
class HardUpdateConfig:
    _target_: str = "trainers.objectives.HardUpdate"
    _partial_: bool = True
    value_network_update_interval: int = checked(1000, ge(1))
