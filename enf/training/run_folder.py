"""A run folder (``runs/<name>/version_<n>/``) read back as data: its data module, rebuilt from the resolved
``config.yaml`` with only the project's own classes, and the folder of a checkpoint."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

__all__ = ["load_datamodule_from_run", "run_dir_of", "trusted_datamodule_class"]


def run_dir_of(checkpoint: str | Path) -> Path:
    """``runs/<name>/version_<n>`` of a checkpoint under its ``checkpoints/`` folder."""
    return Path(checkpoint).resolve().parent.parent


def load_datamodule_from_run(config_path: Path, *, overrides: dict | None = None):
    """Instantiate the ``data`` section of a run's resolved ``config.yaml``."""
    if not config_path.is_file():
        raise FileNotFoundError(
            f"no run config at {config_path}; pass --config pointing at the run's config.yaml"
        )
    cfg = yaml.safe_load(config_path.read_text()) or {}
    data = cfg.get("data")
    if not isinstance(data, dict) or "class_path" not in data:
        raise ValueError(f"{config_path}: expected a 'data' section with class_path/init_args")
    cls = trusted_datamodule_class(data["class_path"], where=config_path)
    init_args = data.get("init_args") or {}
    if not isinstance(init_args, dict):
        raise ValueError(f"{config_path}: data.init_args must be a mapping, got {type(init_args).__name__}")
    kwargs = dict(init_args)
    kwargs.update(overrides or {})
    return cls(**kwargs)


def trusted_datamodule_class(class_path: object, *, where: Path) -> type:
    """The data-module class a run folder's ``config.yaml`` names, if this project provides it.

    A run folder is data, not code: only ``LightningDataModule`` subclasses defined in ``enf`` are
    instantiated; anything else (e.g. ``subprocess.Popen``) is refused before it is imported.
    """
    from lightning.pytorch import LightningDataModule

    refusal = (
        f"{where}: data.class_path {class_path!r} is not a data module of this project (enf.data...); a run "
        "folder may only name the project's own data modules. Fix the config.yaml, or build the data module "
        "in code if you trust it"
    )
    if not isinstance(class_path, str) or not class_path.startswith("enf."):
        raise ValueError(refusal)
    module_name, _, cls_name = class_path.rpartition(".")
    if not module_name or not all(part.isidentifier() for part in class_path.split(".")):
        raise ValueError(refusal)
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError):
        raise ValueError(
            f"{where}: data.class_path {class_path!r} does not exist in this version of enf"
        ) from None
    if not (
        isinstance(cls, type) and issubclass(cls, LightningDataModule) and cls.__module__.startswith("enf.")
    ):
        raise ValueError(refusal)
    return cls
