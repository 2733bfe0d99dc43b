"""Fixtures shared by the loss tests."""

from __future__ import annotations

import pytest

from trainers.objectives import compiled as compiled_module


@pytest.fixture
def compiled_calls(monkeypatch):
    """The calls that ran through a compiled graph (dynamo's counters count compiles, not
    calls)."""
    calls = []
    real = compiled_module.compile_graph

    def counting(function, device):
        graph = real(function, device)

        def call(*args):
            calls.append(args)
            return graph(*args)

        return call

    monkeypatch.setattr(compiled_module, "compile_graph", counting)
    return calls
