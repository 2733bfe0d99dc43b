"""``CompiledOnce``: the rules ``loss.compile`` shares (``trainers/objectives/compiled.py``)."""

from __future__ import annotations

import copy
import pickle
import warnings

import torch
from torch._dynamo.utils import counters

from trainers.objectives.compiled import CompiledOnce

CPU = torch.device("cpu")


def _affine(x: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.tanh(x * scale + 1.0)


def _breaks_the_graph(x: torch.Tensor) -> torch.Tensor:
    y = x + 1.0
    torch._dynamo.graph_break()  # fullgraph=True cannot compile this
    return y * 2.0


def test_first_signature_compiles_and_other_signatures_are_left_to_the_caller():
    compiled = CompiledOnce(_affine, "test(compile=True)")
    x = torch.randn(4, 3)
    counters.clear()
    torch.testing.assert_close(compiled(("a",), CPU, x, 2.0), _affine(x, 2.0))
    assert counters["stats"]["unique_graphs"] == 1
    assert compiled(("b",), CPU, x, 2.0) is None  # another signature: not compiled again
    torch.testing.assert_close(compiled(("a",), CPU, 2 * x, 2.0), _affine(2 * x, 2.0))
    assert counters["stats"]["unique_graphs"] == 1
    torch.set_num_threads(torch.get_num_threads() + 1)  # the thread count is in the signature
    try:
        assert compiled(("a",), CPU, x, 2.0) is None
    finally:
        torch.set_num_threads(torch.get_num_threads() - 1)
    assert not compiled.failed


def test_a_failed_compile_warns_once_naming_the_setting_and_then_stays_eager():
    compiled = CompiledOnce(_breaks_the_graph, "MyLoss(compile=True) (loss.compile)")
    x = torch.randn(3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert compiled(("a",), CPU, x) is None
        assert compiled(("a",), CPU, x) is None
    messages = [str(w.message) for w in caught if "loss.compile" in str(w.message)]
    assert len(messages) == 1, messages
    assert messages[0].startswith(
        "MyLoss(compile=True) (loss.compile): torch.compile failed, the loss runs eagerly"
    )
    assert "Unsupported" in messages[0]
    assert compiled.failed


def test_pickles_and_copies_without_the_compiled_graph():
    compiled = CompiledOnce(_affine, "test(compile=True)")
    x = torch.randn(2)
    compiled(("a",), CPU, x, 3.0)
    for copied in (pickle.loads(pickle.dumps(compiled)), copy.deepcopy(compiled)):
        assert copied._compiled is None and copied.function is _affine
        # The copy compiles for its own first call, whatever the original's signature was.
        torch.testing.assert_close(copied(("b",), CPU, x, 3.0), _affine(x, 3.0))


def test_each_instance_has_dynamo_graphs_of_its_own():
    """Dynamo keeps graphs per code object, with a limit per code object: two losses sharing a
    function would use up each other's (a multirun, a notebook). With a limit of one graph,
    two instances of one function at different shapes each still compile."""
    first, second = (CompiledOnce(_affine, "test(compile=True)") for _ in range(2))
    small, large = torch.randn(3), torch.randn(5, 2)
    with torch._dynamo.config.patch(recompile_limit=1), warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback would warn
        torch.testing.assert_close(first(("a",), CPU, small, 2.0), _affine(small, 2.0))
        torch.testing.assert_close(second(("a",), CPU, large, 2.0), _affine(large, 2.0))
    assert not first.failed and not second.failed
