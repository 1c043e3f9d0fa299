"""Synthetic shock-induced pore collapse in a porous energetic material.

A small, fast stand-in for the hydrocode data of Azarfar et al. (2025): a planar
shock enters a porous solid from the left, pores collapse where it passes, the
collapse work makes hotspots, hot enough hotspots ignite (Arrhenius) and push
pressure back into the material, and the waves scattered by one pore reach its
neighbours. The model is a 2-D explicit finite-difference scheme on a uniform
grid, vectorised over samples with numpy. ``docs/data.md`` gives the equations.

Units throughout: µm, ns, GPa, g/cm³, km/s (= µm/ns), K. In these units the
acoustic equations need no conversion factors (p = ρc², ∂v/∂t = −∇p/ρ).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from skmld.datasets._pore_physics import _SCALES, PorePhysics, _integrate, _pore_mask, _random_pores

__all__ = ["PorePhysics", "make_pore_collapse"]

_BATCH_CELLS = 1 << 18  # samples per batch × cells: keeps the working set cache-sized

_FIELD_ATTRS = {
    "temperature": {"units": "K", "long_name": "temperature"},
    "pressure": {"units": "GPa", "long_name": "pressure"},
    "microstructure": {"units": "1", "long_name": "solid fraction (1 solid, 0 pore)", "valid_min": 0.0,
                       "valid_max": 1.0},
    "reaction": {"units": "1", "long_name": "reaction progress", "valid_min": 0.0, "valid_max": 1.0},
}


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_pores(pores: Any, n_samples: int) -> list[list[list[float]]]:
    if isinstance(pores, (str, bytes)) or not isinstance(pores, Sequence) or len(pores) != n_samples:
        raise ValueError(
            f"pores must be a list with one entry per sample (n_samples={n_samples}), "
            "each a list of (cy, cx, ry, rx) tuples in µm"
        )
    checked = []
    for i, sample in enumerate(pores):
        geometry = np.asarray(sample, dtype=float).reshape(-1, 4) if len(sample) else np.zeros((0, 4))
        if geometry.ndim != 2 or not np.all(np.isfinite(geometry)) or np.any(geometry[:, 2:] <= 0):
            raise ValueError(f"pores[{i}] must hold finite (cy, cx, ry, rx) tuples with ry, rx > 0, got {sample!r}")
        checked.append(geometry.tolist())
    return checked


def _seed_attr(random_state: Any) -> int | str:
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return int(random_state) if random_state is not None else "None"
    return repr(random_state)


def _make(
    scale: str,
    n_samples: int,
    *,
    shape: tuple[int, int] | None,
    n_steps: int | None,
    snapshot_interval: float | None,
    random_state: Any,
    pores: Sequence | None,
    dtype: str,
    progress: bool,
    hidden: bool,
    physics_overrides: dict[str, float],
) -> xr.Dataset:
    """Validate arguments, draw pores, integrate in batches, wrap in a Dataset."""
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {sorted(_SCALES)}, got {scale!r}")
    preset = _SCALES[scale]
    n_samples = _check_int("n_samples", n_samples, 1)
    n_steps = _check_int("n_steps", preset["n_steps"] if n_steps is None else n_steps, 1)
    shape = preset["shape"] if shape is None else shape
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) != 2:
        raise ValueError(f"shape must be a pair (ny, nx) of integers >= 4, got {shape!r}")
    ny, nx = (_check_int("shape", v, 4) for v in shape)
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    known = {f.name for f in dataclasses.fields(PorePhysics)}
    unknown = sorted(set(physics_overrides) - known)
    if unknown:
        raise ValueError(f"unknown physics constant(s) {unknown}; valid names are {sorted(known)}")
    physics = PorePhysics(**physics_overrides)
    physics.check()
    interval = preset["snapshot_interval"] if snapshot_interval is None else snapshot_interval
    substeps = round(interval / physics.dt) if isinstance(interval, (int, float)) and interval > 0 else 0
    if substeps < 1 or not math.isclose(substeps * physics.dt, interval, rel_tol=1e-6):
        raise ValueError(
            f"snapshot_interval must be a positive multiple of dt={physics.dt} ns, got {interval!r}"
        )

    y = (np.arange(ny) + 0.5) * physics.dx
    x = (np.arange(nx) + 0.5) * physics.dx
    if pores is None:
        rng = random_state if isinstance(random_state, np.random.Generator) else None
        if isinstance(random_state, np.random.RandomState):
            rng = np.random.default_rng(random_state.randint(2**31))
        rng = rng if rng is not None else np.random.default_rng(random_state)
        pores = [_random_pores(rng, preset["n_pores"], (ny * physics.dx, nx * physics.dx)) for _ in range(n_samples)]
        if any(len(q) == 0 for q in pores):
            raise ValueError(f"shape={(ny, nx)} is too small to place random pores; enlarge it or pass pores=")
    else:
        pores = _check_pores(pores, n_samples)
    mu0 = np.stack([_pore_mask(q, y, x) for q in pores])

    from tqdm.auto import tqdm

    batch = max(1, _BATCH_CELLS // (ny * nx))
    starts = range(0, n_samples, batch)
    names = ["temperature", "pressure", "microstructure"] + (["reaction"] if hidden else [])
    fields = {k: np.empty((n_samples, n_steps, ny, nx), np.float32) for k in names}
    with tqdm(total=len(starts) * (n_steps - 1), disable=not progress, desc=f"{scale} pore collapse", unit="snapshot") as bar:
        for start in starts:
            out = _integrate(mu0[start : start + batch], physics, n_steps, substeps, np.dtype(dtype).type, bar)
            for k in names:
                fields[k][start : start + batch] = out[k]

    coords = {
        "sample": ("sample", np.arange(n_samples), {"long_name": "sample index"}),
        "time": ("time", np.arange(n_steps) * interval, {"units": "ns", "long_name": "time"}),
        "y": ("y", y, {"units": "µm", "long_name": "transverse position"}),
        "x": ("x", x, {"units": "µm", "long_name": "position along the shock direction"}),
    }
    field_attrs = {k: dict(v) for k, v in _FIELD_ATTRS.items()}
    # Heat sources are non-negative and conduction keeps the minimum: T never drops below its start.
    field_attrs["temperature"]["valid_min"] = float(physics.t_initial)
    data_vars = {k: (("sample", "time", "y", "x"), fields[k], field_attrs[k]) for k in names}
    attrs: dict[str, Any] = {
        "title": f"synthetic shock-induced pore collapse ({scale})",
        "source": "skmld.datasets.make_pore_collapse",
        "scale": scale,
        "random_state": _seed_attr(random_state),
        "snapshot_interval_ns": float(interval),
        "pores": json.dumps(pores),
        "pores_description": "per sample: list of (cy, cx, ry, rx) ellipses in µm",
    }
    attrs.update({f"physics_{k}": float(v) for k, v in dataclasses.asdict(physics).items()})
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def make_pore_collapse(
    scale: str,
    n_samples: int,
    *,
    shape: tuple[int, int] | None = None,
    n_steps: int | None = None,
    snapshot_interval: float | None = None,
    random_state: int | np.random.Generator | np.random.RandomState | None = None,
    pores: Sequence[Sequence[Sequence[float]]] | None = None,
    dtype: str = "float32",
    progress: bool = False,
    **physics_overrides: float,
) -> xr.Dataset:
    """Simulate shock-induced pore collapse in a porous energetic material.

    A planar shock (piston pressure ``p_shock``) enters from the left, collapses
    the pores it passes, the collapse work makes hotspots, hot enough hotspots
    ignite and push pressure back into the material, and waves scattered by one
    pore reach its neighbours. One physics serves both scales: ``"meso"`` is a
    2 × 2 tiling of the ``"micro"`` domain with many pores, saved at twice the
    micro snapshot interval. See ``docs/data.md`` for the equations.

    Parameters
    ----------
    scale : {"micro", "meso"}
        Preset. ``"micro"``: one random pore in a 64 × 96 grid (y × x, 1 µm
        cells), 20 snapshots 2 ns apart. ``"meso"``: 6–14 random pores in a
        128 × 192 grid, 20 snapshots 4 ns apart.
    n_samples : int
        Number of independent simulations.
    shape : tuple of int, default=None
        Grid ``(ny, nx)``; ``None`` takes the preset's.
    n_steps : int, default=None
        Number of snapshots, the initial state included; ``None`` takes the
        preset's (20).
    snapshot_interval : float, default=None
        Time between snapshots in ns, a multiple of ``dt``; ``None`` takes the
        preset's (micro 2 ns, meso 4 ns).
    random_state : int, numpy Generator or RandomState, default=None
        Seeds the pore geometry (the only random part; the physics is
        deterministic). The same seed gives identical output.
    pores : list, default=None
        Explicit geometry instead of random pores: one list per sample of
        ``(cy, cx, ry, rx)`` ellipses (centre and semi-axes in µm, x along the
        shock). An empty list makes a pore-free sample.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the integration; the output is always float32.
    progress : bool, default=False
        Show a tqdm progress bar (one tick per snapshot and sample batch).
    **physics_overrides : float
        Replace constants of :class:`PorePhysics` by name, e.g. ``p_shock=15``.

    Returns
    -------
    xarray.Dataset
        Data variables ``temperature`` [K], ``pressure`` [GPa] and
        ``microstructure`` [-] (float32) on dims ``("sample", "time", "y",
        "x")``; coords ``sample``, ``time`` [ns], ``y``, ``x`` [µm] (cell
        centres). Attributes record the scale, the random state, the pores as
        JSON and every physics constant (``physics_<name>``).

    Raises
    ------
    ValueError
        For an unknown scale, a bad count, shape, interval or pore list, an
        unknown physics constant, or constants that make the scheme unstable.

    Examples
    --------
    >>> from skmld.datasets import make_pore_collapse
    >>> ds = make_pore_collapse("micro", 2, shape=(32, 48), n_steps=4, random_state=0)
    >>> ds["temperature"].dims
    ('sample', 'time', 'y', 'x')
    >>> ds.sizes["time"], float(ds["time"][-1]), ds["pressure"].attrs["units"]
    (4, 6.0, 'GPa')
    >>> bool((ds["microstructure"].diff("time") >= 0).all())
    True
    """
    return _make(
        scale,
        n_samples,
        shape=shape,
        n_steps=n_steps,
        snapshot_interval=snapshot_interval,
        random_state=random_state,
        pores=pores,
        dtype=dtype,
        progress=progress,
        hidden=False,
        physics_overrides=physics_overrides,
    )
