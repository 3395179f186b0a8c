"""The PDE generator interface: a spec per equation, deterministic per-trajectory seeds.

A generator is a :class:`PDESpec`: static metadata (geometry, equation, channel names), named presets of
parameters (``small`` runs in well under 2 minutes on 2 CPU cores; ``paper`` matches the published setup),
and pure functions of the parameters: the grid coordinates, the stored times, optional quadrature
weights, ``simulate(params, split, seeds) -> fields [n, T, *grid, C]`` and, optionally,
``ic_params(params, split, seeds) -> [n, P]``: the random parameters of each trajectory's initial condition
(source positions, bump centres...), stored next to the fields. Trajectory ``i`` of a split always uses the
seed :func:`trajectory_seed` ``(seed, split, i)``, so results do not depend on how the generation was
chunked or resumed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["PDESpec", "trajectory_seed"]


def trajectory_seed(seed: int, split: str, index: int) -> int:
    """A 63-bit seed for trajectory ``index`` of ``split``, independent of chunking."""
    digest = hashlib.sha256(f"{seed}:{split}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass(frozen=True)
class PDESpec:
    """Everything needed to generate, store and describe one PDE dataset.

    Attributes:
        name: registry name (``enf data generate <name>``).
        geometry: the ``enf.geometry`` registry name whose coordinate convention ``coords`` follows.
        equation: a one-line description of the equation.
        channel_names: names of the field channels, in order.
        presets: ``{"small": {...}, "paper": {...}}`` parameter dicts; must contain ``num_train`` and
            ``num_test`` (trajectories per split); every physical parameter is stored in the file.
        coords: ``params -> [*grid, coord_dim]`` float array in the geometry's convention.
        times: ``params -> [T]`` stored times.
        simulate: ``(params, split, seeds) -> [len(seeds), T, *grid, C]`` float array, or a dict with that
            array under ``fields`` and further per-trajectory arrays (stored under their keys, e.g. a
            full-resolution ``fields_full``); ``split`` lets a generator draw train and test initial
            conditions from different distributions.
        weights: optional ``params -> [*grid]`` quadrature weights.
        extra_arrays: optional ``params -> {name: array}`` stored next to ``coords`` (e.g. a second grid).
        ic_params: optional ``(params, split, seeds) -> [len(seeds), len(ic_param_names)]``: the random
            initial-condition parameters of each trajectory, exactly those ``simulate`` draws from the same
            seeds (stored as the ``ic_params`` dataset, see :mod:`enf.data.pde.io`).
        ic_param_names: the names of the ``ic_params`` columns (required with ``ic_params``).
        version: bump when the generated data changes.
        description: a paragraph for ``enf data list`` / the README.
    """

    name: str
    geometry: str
    equation: str
    channel_names: tuple[str, ...]
    presets: Mapping[str, Mapping[str, Any]]
    coords: Callable[[Mapping[str, Any]], np.ndarray]
    times: Callable[[Mapping[str, Any]], np.ndarray]
    simulate: Callable[[Mapping[str, Any], str, list[int]], np.ndarray | dict[str, np.ndarray]]
    weights: Callable[[Mapping[str, Any]], np.ndarray] | None = None
    extra_arrays: Callable[[Mapping[str, Any]], dict[str, np.ndarray]] | None = None
    version: str = "1"
    description: str = ""
    requires: tuple[str, ...] = field(default_factory=tuple)
    ic_params: Callable[[Mapping[str, Any], str, list[int]], np.ndarray] | None = None
    ic_param_names: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if (self.ic_params is None) != (len(self.ic_param_names) == 0):
            raise ValueError(
                f"{self.name}: ic_params and ic_param_names go together, got ic_params={self.ic_params!r} "
                f"and ic_param_names={self.ic_param_names!r}"
            )
        if len(set(self.ic_param_names)) != len(self.ic_param_names):
            raise ValueError(f"{self.name}: ic_param_names must be distinct, got {self.ic_param_names!r}")

    def params(self, preset: str, **overrides: Any) -> dict[str, Any]:
        """The parameters of ``preset`` with ``overrides`` applied (unknown keys are errors)."""
        if preset not in self.presets:
            raise ValueError(f"{self.name}: unknown preset {preset!r}; choose one of {sorted(self.presets)}")
        params = dict(self.presets[preset])
        unknown = sorted(set(overrides) - set(params))
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s) {unknown}; known: {sorted(params)}")
        params.update({k: v for k, v in overrides.items() if v is not None})
        return params
