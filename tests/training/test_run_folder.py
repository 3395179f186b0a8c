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


LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_run"


@pytest.mark.parametrize(("task", "name"), [("fit", "fit_config.yaml"), ("forecast", "forecast_config.yaml")])
def test_a_run_folder_of_the_previous_layout_still_parses(task: str, name: str, capsys) -> None:
    """The resolved configs that runs wrote before the entry points and figures moved (enf.cli,
    enf.plotting) parse with today's CLI: every class path and key they name still exists."""
    from enf.cli.lightning import run_lightning_cli

    with pytest.raises(SystemExit) as exc:
        run_lightning_cli(["fit", "--config", str(LEGACY / name), "--print_config"], task=task)
    assert exc.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["init_args"]["dataset"] == "navier_stokes_decaying"


def test_a_run_folder_of_the_previous_layout_builds_its_data_module() -> None:
    dm = load_datamodule_from_run(LEGACY / "fit_config.yaml")
    assert isinstance(dm, PDEDataModule)
    assert (dm.dataset_name, dm.root, dm.num_val) == ("navier_stokes_decaying", Path("data/nsd"), 8)
