"""The physics of the synthetic pore collapse: constants, pore geometry and the time integration.

A 2-D explicit finite-difference scheme on a uniform grid, vectorised over
samples with numpy; ``docs/data.md`` gives the equations. Units: µm, ns, GPa,
g/cm³, km/s (= µm/ns), K.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np


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
