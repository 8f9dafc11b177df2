"""The Example: blocks of microcnn.analysis are true (they are the first thing a user copies)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["__init__", "results", "quantify", "stereology", "classical", "report", "render"]


@pytest.mark.parametrize("name", MODULES)
def test_examples_in_docstrings_hold(name):
    module = importlib.import_module("microcnn.analysis" + ("" if name == "__init__" else f".{name}"))
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module.__name__} has no Example"
    assert result.failed == 0
