"""``collate``: the generic stacking of field-contract items, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from enf.data import collate
from enf.data.keys import COORDS, FRAME, INDEX, MASK, SIGNAL, TIME


def _item(i: int) -> dict:
    gen = torch.Generator().manual_seed(i)
    return {
        COORDS: torch.rand(5, 2, generator=gen),
        SIGNAL: torch.rand(5, 3, generator=gen),
        INDEX: i,
        TIME: 0.5 * i,
        FRAME: np.int64(i + 1),
        MASK: torch.arange(5) < i,
        "flag": i % 2 == 0,
    }


def test_collate_stacks_every_key_with_a_batch_dimension() -> None:
    items = [_item(i) for i in range(3)]
    batch = collate(items)
    assert set(batch) == set(items[0])
    for key in (COORDS, SIGNAL, MASK):
        assert torch.equal(batch[key], torch.stack([it[key] for it in items]))
    assert batch[INDEX].dtype == torch.int64 and batch[INDEX].tolist() == [0, 1, 2]
    assert batch[TIME].dtype == torch.float32 and batch[TIME].tolist() == [0.0, 0.5, 1.0]
    assert batch[FRAME].dtype == torch.int64 and batch[FRAME].tolist() == [1, 2, 3]
    assert batch["flag"].dtype == torch.bool and batch["flag"].tolist() == [True, False, True]
    assert batch[MASK].dtype == torch.bool and int(batch[MASK].sum()) == 0 + 1 + 2


def test_collate_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match="empty"):
        collate([])
    items = [_item(0), _item(1)]
    del items[1][TIME]
    with pytest.raises(ValueError, match=r"item 1 has keys .*missing \['time'\]"):
        collate(items)
    items = [_item(0), _item(1)]
    items[1][SIGNAL] = torch.zeros(6, 3)
    with pytest.raises(ValueError, match=r"'signal' of item 1 has shape \(6, 3\).*item 0 has shape \(5, 3\)"):
        collate(items)
    items = [_item(0), _item(1)]
    items[0]["name"] = items[1]["name"] = "a string"
    with pytest.raises(TypeError, match="item 0 has 'name' of type str"):
        collate(items)
