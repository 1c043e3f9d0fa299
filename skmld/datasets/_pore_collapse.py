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

__all__ = ["PorePhysics", "make_pore_collapse"]


@dataclasses.dataclass(frozen=True)
class PorePhysics:
    """Physical and numerical constants of the pore-collapse simulator.

    Every field can be overridden by name through the ``**physics_overrides`` of
    :func:`make_pore_collapse`. Units: µm, ns, GPa, g/cm³, km/s, K.
    """

    # Grid and time integration.
    dx: float = 1.0  # cell size [µm]
    dt: float = 0.1  # integration step [ns]; stability needs c·dt/dx ≲ 0.5
    # Acoustics: solid values and the pore/solid ratios (pores are a soft,
    # light medium; ratios far below 0.5 make pore velocities explode).
    rho_solid: float = 1.9  # density [g/cm³]
    bulk_solid: float = 17.0  # bulk modulus [GPa]; c = sqrt(K/ρ) ≈ 3 km/s
    rho_pore_ratio: float = 0.5  # ρ_pore / ρ_solid [-]
    bulk_pore_ratio: float = 0.25  # K_pore / K_solid [-]
    viscosity: float = 0.3  # artificial viscosity (pressure diffusion) [µm²/ns]
    # Loading.
    p_shock: float = 12.0  # piston pressure at the left boundary [GPa]
    rise_time: float = 1.0  # linear ramp of the piston pressure [ns]
    # Pore collapse: dμ/dt = k_c·max(p3 − p_c, 0)·(1 − μ)·mean3(μ).
    p_collapse: float = 2.0  # pressure threshold of collapse [GPa]
    k_collapse: float = 0.25  # collapse rate constant [1/(GPa·ns)]
    # Heat: dT/dt = α∇²T + β·rise(max p) + H·p3·dμ/dt + Q·dλ/dt.
    t_initial: float = 300.0  # initial temperature [K]
    diffusivity: float = 1.0  # thermal diffusivity α [µm²/ns]
    heat_compression: float = 30.0  # β [K/GPa]
    heat_collapse: float = 160.0  # H [K/GPa]
    # Reaction: dλ/dt = (1 − λ)·Z·exp(−T_a/T); heat Q and pressure G on burning.
    arrhenius_rate: float = 900.0  # Z [1/ns]
    activation_temperature: float = 3.0e4  # T_a [K]
    heat_reaction: float = 1300.0  # Q [K]
    pressure_reaction: float = 35.0  # G [GPa]

    def check(self) -> None:
        """Raise ValueError for non-finite, negative or unstable constants."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"physics constant {f.name!r} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"physics constant {f.name!r} must be >= 0, got {value!r}")
        for name in ("dx", "dt", "rho_solid", "bulk_solid", "rho_pore_ratio", "bulk_pore_ratio"):
            if getattr(self, name) <= 0:
                raise ValueError(f"physics constant {name!r} must be > 0, got {getattr(self, name)!r}")
        for name in ("rho_pore_ratio", "bulk_pore_ratio"):
            if getattr(self, name) > 1:
                raise ValueError(f"physics constant {name!r} must be <= 1, got {getattr(self, name)!r}")
        # Explicit-scheme limits: acoustic CFL (fastest speed is the solid's) and
        # the 2-D diffusion limit, which applies to heat and viscosity alike.
        courant = math.sqrt(self.bulk_solid / self.rho_solid) * self.dt / self.dx
        if courant > 0.5:
            raise ValueError(
                f"physics constant 'dt'={self.dt} is unstable: acoustic Courant number "
                f"{courant:.2f} > 0.5; use dt <= {0.5 * self.dx / math.sqrt(self.bulk_solid / self.rho_solid):.3g} ns"
            )
        for name in ("diffusivity", "viscosity"):
            number = getattr(self, name) * self.dt / self.dx**2
            if number > 0.25:
                raise ValueError(
                    f"physics constant 'dt'={self.dt} is unstable with {name}={getattr(self, name)}: "
                    f"{name}·dt/dx² = {number:.2f} > 0.25"
                )


# Presets: grid (y, x), snapshots, snapshot interval [ns], pore count range.
_SCALES: dict[str, dict[str, Any]] = {
    "micro": {"shape": (64, 96), "n_steps": 20, "snapshot_interval": 2.0, "n_pores": (1, 1)},
    "meso": {"shape": (128, 192), "n_steps": 20, "snapshot_interval": 4.0, "n_pores": (6, 14)},
}
# Random pore geometry [µm]: mean radius, aspect ratio ry/rx, clearances.
_RADIUS_RANGE = (3.0, 9.0)
_ASPECT_RANGE = (0.5, 2.0)
_LEFT_CLEARANCE = 16.0  # keep pores away from the piston
_WALL_CLEARANCE = 3.0  # keep pores inside the domain
_PORE_GAP = 3.0  # minimum solid between two pores of one sample


# --------------------------------------------------------------------------- #
# Stencils (edge-padded, so boundaries act as mirrors).
# --------------------------------------------------------------------------- #
def _laplacian(a: np.ndarray, dx: float) -> np.ndarray:
    """5-point Laplacian over the last two axes with zero-flux boundaries."""
    b = np.pad(a, ((0, 0), (1, 1), (1, 1)), mode="edge")
    return (b[:, :-2, 1:-1] + b[:, 2:, 1:-1] + b[:, 1:-1, :-2] + b[:, 1:-1, 2:] - 4.0 * a) / dx**2


def _max3(a: np.ndarray) -> np.ndarray:
    """3×3 neighbourhood maximum over the last two axes (separable)."""
    b = np.pad(a, ((0, 0), (0, 0), (1, 1)), mode="edge")
    m = np.maximum(np.maximum(b[:, :, :-2], b[:, :, 1:-1]), b[:, :, 2:])
    b = np.pad(m, ((0, 0), (1, 1), (0, 0)), mode="edge")
    return np.maximum(np.maximum(b[:, :-2], b[:, 1:-1]), b[:, 2:])


def _mean3(a: np.ndarray) -> np.ndarray:
    """3×3 neighbourhood mean over the last two axes (separable)."""
    b = np.pad(a, ((0, 0), (0, 0), (1, 1)), mode="edge")
    m = b[:, :, :-2] + b[:, :, 1:-1] + b[:, :, 2:]
    b = np.pad(m, ((0, 0), (1, 1), (0, 0)), mode="edge")
    return (b[:, :-2] + b[:, 1:-1] + b[:, 2:]) / 9.0


# --------------------------------------------------------------------------- #
# Pores.
# --------------------------------------------------------------------------- #
def _pore_mask(pores: Sequence[Sequence[float]], y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Solid fraction of one sample: 1 in solid, 0 in pores, anti-aliased edges."""
    mu = np.ones((y.size, x.size))
    yy, xx = y[:, None], x[None, :]
    for cy, cx, ry, rx in pores:
        # Approximate signed distance to the ellipse, in µm (negative inside);
        # one cell-width ramp gives sub-pixel edges without staircase artefacts.
        rho = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
        dist = (rho - 1.0) * min(ry, rx)
        mu = np.minimum(mu, np.clip(0.5 + dist / (x[1] - x[0] if x.size > 1 else 1.0), 0.0, 1.0))
    return mu


def _random_pores(rng: np.random.Generator, n_pores: tuple[int, int], extent: tuple[float, float]) -> list:
    """Draw non-overlapping axis-aligned elliptical pores for one sample."""
    ly, lx = extent
    count = int(rng.integers(n_pores[0], n_pores[1] + 1))
    pores: list[list[float]] = []
    for _ in range(200 * count):  # rejection sampling; dense draws just give fewer pores
        if len(pores) == count:
            break
        radius = rng.uniform(*_RADIUS_RANGE)
        aspect = math.exp(rng.uniform(math.log(_ASPECT_RANGE[0]), math.log(_ASPECT_RANGE[1])))
        ry, rx = radius * math.sqrt(aspect), radius / math.sqrt(aspect)
        y_lo, y_hi = ry + _WALL_CLEARANCE, ly - ry - _WALL_CLEARANCE
        x_lo, x_hi = _LEFT_CLEARANCE + rx, lx - rx - 2 * _WALL_CLEARANCE
        if y_lo >= y_hi or x_lo >= x_hi:
            continue
        # Micro: centre the pore's x in the first two thirds so its collapse and
        # hotspot evolve inside the 20 snapshots; meso pores fill the domain.
        if n_pores == (1, 1):
            x_hi = min(x_hi, 2.0 * lx / 3.0)
        cy, cx = rng.uniform(y_lo, y_hi), rng.uniform(x_lo, x_hi)
        # Bounding circles are a cheap, conservative overlap test.
        if all(math.hypot(cy - q[0], cx - q[1]) > max(ry, rx) + max(q[2], q[3]) + _PORE_GAP for q in pores):
            pores.append([round(v, 3) for v in (cy, cx, ry, rx)])
    return pores


# --------------------------------------------------------------------------- #
# Time integration.
# --------------------------------------------------------------------------- #
def _integrate(mu0: np.ndarray, c: PorePhysics, n_steps: int, substeps: int, dtype, bar=None) -> dict:
    """Integrate a batch of samples; return snapshots of every state variable.

    ``mu0`` has shape (batch, ny, nx). Snapshot 0 is the initial state; each
    following one is ``substeps`` integration steps later.
    """
    dt, dx = dtype(c.dt), dtype(c.dx)
    n, ny, nx = mu0.shape
    mu = mu0.astype(dtype)
    p = np.zeros_like(mu)
    temp = np.full_like(mu, c.t_initial)
    lam = np.zeros_like(mu)
    p_run = np.zeros_like(mu)  # running max of p: compression heats once
    vx = np.zeros((n, ny, nx + 1), dtype)  # staggered: x-faces
    vy = np.zeros((n, ny + 1, nx), dtype)  # staggered: y-faces (walls: vy = 0)

    rho_pore, bulk_pore = c.rho_solid * c.rho_pore_ratio, c.bulk_solid * c.bulk_pore_ratio
    out = {k: np.empty((n, n_steps, ny, nx), dtype) for k in ("temperature", "pressure", "microstructure", "reaction")}

    def save(i):
        out["temperature"][:, i], out["pressure"][:, i] = temp, p
        out["microstructure"][:, i], out["reaction"][:, i] = mu, lam

    save(0)
    step = 0
    for i in range(1, n_steps):
        for _ in range(substeps):
            step += 1
            t = step * c.dt
            rho = rho_pore + (c.rho_solid - rho_pore) * mu
            bulk = bulk_pore + (c.bulk_solid - bulk_pore) * mu
            # Momentum on staggered faces with face-averaged density.
            p_left = c.p_shock * min(t / c.rise_time, 1.0) if c.rise_time > 0 else c.p_shock
            vx[:, :, 1:-1] -= (dt / dx) * (p[:, :, 1:] - p[:, :, :-1]) / (0.5 * (rho[:, :, 1:] + rho[:, :, :-1]))
            vx[:, :, 0] -= (dt / dx) * (p[:, :, 0] - p_left) / rho[:, :, 0]  # piston
            vx[:, :, -1] = p[:, :, -1] / np.sqrt(rho[:, :, -1] * bulk[:, :, -1])  # outflow: p = Z·v
            vy[:, 1:-1, :] -= (dt / dx) * (p[:, 1:, :] - p[:, :-1, :]) / (0.5 * (rho[:, 1:, :] + rho[:, :-1, :]))
            # Reaction progress, integrated exactly over the step at frozen T.
            dlam = (1.0 - lam) * -np.expm1(-dt * c.arrhenius_rate * np.exp(-c.activation_temperature / temp))
            # Pressure: compression, artificial viscosity, burning gas.
            div = (vx[:, :, 1:] - vx[:, :, :-1] + vy[:, 1:, :] - vy[:, :-1, :]) / dx
            p = p + dt * (c.viscosity * _laplacian(p, dx) - bulk * div) + c.pressure_reaction * dlam
            # Collapse: the void carries little pressure, so drive it by the
            # 3×3 max; pores fill from their solid edges (mean3), never empty.
            p3 = _max3(p)
            rate = c.k_collapse * np.maximum(p3 - c.p_collapse, 0.0) * _mean3(mu)
            dmu = (1.0 - mu) * -np.expm1(-dt * rate)
            mu = mu + dmu
            # Heat: conduction, compression (once, from the rise of max p),
            # collapse work, reaction.
            p_new_max = np.maximum(p_run, p)
            temp = temp + (
                dt * c.diffusivity * _laplacian(temp, dx)
                + c.heat_compression * (p_new_max - p_run)
                + c.heat_collapse * p3 * dmu
                + c.heat_reaction * dlam
            )
            p_run = p_new_max
            lam = lam + dlam
        save(i)
        if bar is not None:
            bar.update(1)
    return out


# --------------------------------------------------------------------------- #
# Public entry point.
# --------------------------------------------------------------------------- #
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
    data_vars = {k: (("sample", "time", "y", "x"), fields[k], _FIELD_ATTRS[k]) for k in names}
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
