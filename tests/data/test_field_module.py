"""``FieldDataModule``: the loaders every field data module inherits, on a toy subclass with known items."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from enf.data import FieldDataModule, FieldSpec
from enf.data.keys import COORDS, INDEX, SIGNAL


class _Toy(Dataset):
    def __init__(self, n: int, offset: float) -> None:
        self.n, self.offset = n, offset

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {COORDS: torch.zeros(3, 1), SIGNAL: torch.full((3, 1), self.offset + i), INDEX: i}


class _ToyModule(FieldDataModule):
    def __init__(self, *, num_train: int = 10, num_test: int = 5, **kwargs) -> None:
        super().__init__(**kwargs)
        self._data = {"train": _Toy(num_train, 0.0), "test": _Toy(num_test, 100.0)}

    def dataset(self, split: str) -> Dataset:
        return self._data[split]

    @property
    def field_spec(self) -> FieldSpec:
        return FieldSpec(kind="points", coord_dim=1, num_channels=1, name="toy")


def test_base_class_is_abstract() -> None:
    with pytest.raises(TypeError, match="abstract"):
        FieldDataModule()  # type: ignore[abstract]


def test_train_loader_shuffles_with_its_seed_and_drops_the_last_partial_batch() -> None:
    dm = _ToyModule(batch_size=4, seed=3)
    batches = list(dm.train_dataloader())
    assert [len(b[INDEX]) for b in batches] == [4, 4]  # 10 items: the last 2 are dropped
    seen = torch.cat([b[INDEX] for b in batches]).tolist()
    assert len(set(seen)) == 8 and seen != sorted(seen)
    assert seen == torch.cat([b[INDEX] for b in _ToyModule(batch_size=4, seed=3).train_dataloader()]).tolist()
    assert seen != torch.cat([b[INDEX] for b in _ToyModule(batch_size=4, seed=4).train_dataloader()]).tolist()
    for b in batches:  # values travel with their index
        torch.testing.assert_close(b[SIGNAL][:, 0, 0], b[INDEX].float())
    (small,) = list(_ToyModule(batch_size=16).train_dataloader())  # smaller than a batch: kept whole
    assert sorted(small[INDEX].tolist()) == list(range(10))


def test_eval_loaders_and_derived_facts() -> None:
    dm = _ToyModule(batch_size=4, eval_batch_size=2)
    assert dm.num_train_signals == 10 and dm.num_channels == 1 and dm.eval_splits == ("train", "test")
    assert dm.field_spec_dict == FieldSpec(kind="points", coord_dim=1, num_channels=1, name="toy").to_dict()
    val = list(dm.val_dataloader())
    assert [b[INDEX].tolist() for b in val] == [[0, 1], [2, 3], [4]]
    torch.testing.assert_close(torch.cat([b[SIGNAL][:, 0, 0] for b in val]), 100.0 + torch.arange(5.0))
    assert [b[INDEX].tolist() for b in dm.test_dataloader()] == [b[INDEX].tolist() for b in val]
    capped = list(dm.eval_dataloader("train", max_samples=3))
    assert [b[INDEX].tolist() for b in capped] == [[0, 1], [2]]
    assert len(list(dm.eval_dataloader("train"))) == 5
    with pytest.raises(ValueError, match="max_samples"):
        dm.eval_dataloader("train", max_samples=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed must be an int"):
        _ToyModule(seed=1.5)
