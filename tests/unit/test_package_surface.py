"""The package's public names: each is loaded on first use, and is what its module defines
(that ``import nodecert`` alone loads nothing: ``tests/integration/test_import_contract.py``).
"""

from __future__ import annotations

import importlib

import pytest

import nodecert

HOMES = ("nodecert.core.errors", "nodecert.core.decision", "nodecert.core.identity")


def test_every_public_name_is_the_object_its_module_defines() -> None:
    for name in nodecert.__all__:
        if name == "Client":
            home = importlib.import_module("nodecert.client")
        else:
            home = next(
                module
                for module in map(importlib.import_module, HOMES)
                if getattr(module, name, None) is not None
            )
        assert getattr(nodecert, name) is getattr(home, name), name
    assert set(nodecert.__all__) <= set(dir(nodecert))


def test_a_name_the_package_does_not_export_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'LocalCA'"):
        _ = nodecert.LocalCA  # type: ignore[attr-defined]
    with pytest.raises(ImportError):
        from nodecert import Settings  # type: ignore[attr-defined]  # noqa: F401
