"""A run folder is data, not code: its ``config.yaml`` may only name the project's own data modules."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from enf.data import PDEDataModule
from enf.training.run_folder import load_datamodule_from_run


def write_config(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"data": data}))
    return path


@pytest.mark.parametrize(
    "class_path",
    [
        "subprocess.Popen",
        "os.system",
        "builtins.eval",
        "enf.cli.encode.check_writable",  # in enf, but not a data module
        "enf.nn.EquivariantNeuralField",  # a class of enf, but not a data module
        "lightning.pytorch.LightningDataModule",  # a data module, but not one of this project's
        "enf..data.PDEDataModule",
        "enf.data.NoSuchModule",
        "enf.no_such_package.Thing",
        42,
    ],
)
def test_a_run_config_cannot_instantiate_arbitrary_code(tmp_path: Path, class_path: object) -> None:
    marker = tmp_path / "pwned"
    config = write_config(
        tmp_path,
        {"class_path": class_path, "init_args": {"args": ["touch", str(marker)], "command": "touch x"}},
    )
    with pytest.raises(ValueError, match="data.class_path") as info:
        load_datamodule_from_run(config)
    assert repr(class_path) in str(info.value) and str(config) in str(info.value)
    assert not marker.exists()


def test_the_project_data_modules_still_load(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {
            "class_path": "enf.data.PDEDataModule",
            "init_args": {"dataset": "diffusion_plane", "root": str(tmp_path)},
        },
    )
    dm = load_datamodule_from_run(config, overrides={"batch_size": 3})
    assert isinstance(dm, PDEDataModule) and dm.batch_size == 3
    with pytest.raises(ValueError, match="init_args must be a mapping"):
        load_datamodule_from_run(
            write_config(tmp_path, {"class_path": "enf.data.PDEDataModule", "init_args": [1]})
        )
