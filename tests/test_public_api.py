"""Every name the public API promises resolves to an object of that name."""

from __future__ import annotations

import importlib

import pytest

import microcnn


@pytest.mark.parametrize("name", sorted(microcnn._API))
def test_public_name_resolves(name):
    module = importlib.import_module(microcnn._API[name])
    assert getattr(microcnn, name) is getattr(module, name)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        microcnn.nonexistent  # noqa: B018
