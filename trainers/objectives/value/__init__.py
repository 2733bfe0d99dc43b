"""Value estimators: GAE and TD(0) targets (terminated: no bootstrap; truncated: bootstrap)."""

from __future__ import annotations

from trainers.objectives.value.advantages import GAE
from trainers.objectives.value.functional import (
    generalized_advantage_estimate,
    td0_return_estimate,
)

__all__ = ["GAE", "generalized_advantage_estimate", "td0_return_estimate"]
