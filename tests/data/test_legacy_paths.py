"""Module paths of the previous layout (``enf.data``, ``enf.editing``) import the module at its new path (saved configs, pickles
and user code that name them keep working)."""

from __future__ import annotations

import importlib

import pytest

from enf._legacy import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_path_is_the_new_module(old: str) -> None:
    assert importlib.import_module(old) is importlib.import_module(MOVED[old])


def test_old_class_path_resolves_to_the_same_class() -> None:
    from enf.data.modules.sdf import SDFDataModule

    legacy = importlib.import_module("enf.data.sdf_module")
    assert legacy.SDFDataModule is SDFDataModule


def test_unknown_module_path_still_fails() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("enf.data.no_such_module")
