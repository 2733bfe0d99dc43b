"""MetricAccumulator: means between flushes, in-place sums, and its checkpointed state."""

from __future__ import annotations

import pytest
import torch

from trainers.trainer.metrics import MetricAccumulator


def test_add_tensors_and_add_give_plain_means_without_touching_the_inputs():
    acc = MetricAccumulator()
    first = torch.tensor(1.0, requires_grad=True) * 1.0  # a loss term with a graph
    acc.add_tensors({"loss": first, "flag": torch.tensor(True)})
    acc.add_tensors({"loss": torch.tensor([3.0]), "flag": torch.tensor(False)})  # one-element
    acc.add({"loss": 5.0, "episode_return": (torch.tensor(-30.0), torch.tensor(3.0))})
    assert first.item() == 1.0  # the sum grew in its own storage, not in the first value
    assert acc.flush() == {"loss": 3.0, "flag": 0.5, "episode_return": -10.0}
    assert acc.flush() == {}


def test_in_place_sums_continue_from_a_loaded_state():
    acc = MetricAccumulator()
    acc.add_tensors({"loss": torch.tensor(2.0)})
    state = acc.state_dict()
    resumed = MetricAccumulator()
    resumed.load_state_dict(state)  # Python floats now
    for accumulator in (acc, resumed):
        accumulator.add_tensors({"loss": torch.tensor(4.0)})
        accumulator.add_tensors({"loss": torch.tensor(6.0)})
    assert acc.flush() == resumed.flush() == {"loss": pytest.approx(4.0)}
