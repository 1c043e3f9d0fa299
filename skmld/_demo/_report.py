"""The demo's plain-text tables."""

from __future__ import annotations

import math

MODELS = ("transfer", "from scratch", "persistence", "climatology")


def _fmt(value) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    a = abs(value)
    return f"{value:.3g}" if (a >= 1e4 or (a < 1e-2 and a != 0)) else f"{value:.3f}" if a < 10 else f"{value:.1f}"


def _metric_rows(m: dict, models, threshold: str) -> list:
    """``(label, unit, values per model)`` of the per-field and hotspot scores of :func:`_evaluate`'s dicts."""
    tr = m[models[0]]
    rows = []
    for f in tr["r2_per_field"]:
        rows.append((f"R² {f}", "-", [m[k]["r2_per_field"][f] for k in models]))
    rows.append(("mean per-field R²", "-", [m[k]["r2"] for k in models]))
    for f, unit in tr["field_rmse_units"].items():
        rows.append((f"RMSE {f}", unit, [m[k]["field_rmse"][f] for k in models]))
    for th in tr["hot_mask"]:
        rows.append((f"hot-mask F1, T > {th} K", "-", [m[k]["hot_mask"][th]["f1"] for k in models]))
    rows.append((f"hotspots per frame (true {tr['hot_mask'][threshold]['n_hotspots_true']:.2f})", "-",
                 [m[k]["hot_mask"][threshold]["n_hotspots_pred"] for k in models]))
    rows.append(("RMSE excess heat", "K µm^2", [m[k]["hot_mask"][threshold]["excess_heat_rmse"] for k in models]))
    labels = {"T_hs": "RMSE T_hs", "A_hs": "RMSE A_hs", "dT_hs_dt": "RMSE dT_hs/dt", "dA_hs_dt": "RMSE dA_hs/dt"}
    for key, label in labels.items():
        rows.append((label, tr["hotspot_rmse_units"][key], [m[k]["hotspot_rmse"][key] for k in models]))
    for k in (1, 2):
        rows.append((f"coverage ±{k}σ (ideal {tr[f'coverage_{k}sigma_nominal']:.3f})", "-",
                     [m[name].get(f"coverage_{k}sigma") for name in models]))
    return rows


def _aligned(header, rows) -> list[str]:
    """Header and rows as aligned lines between rules."""
    body = [(label, unit, *(_fmt(v) for v in values)) for label, unit, values in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(r):
        return "  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1])]
                         + [c.rjust(w) for c, w in zip(r[2:], widths[2:])]).rstrip()

    rule = "-" * len(line(header))
    return [rule, line(header), rule, *map(line, body), rule]


def format_scores(metrics: dict, threshold: float) -> str:
    """Aligned table of per-field and hotspot scores, one column per model (``skmld evaluate``)."""
    models = tuple(metrics)
    return "\n".join(_aligned(("metric", "unit", *models), _metric_rows(metrics, models, f"{threshold:g}")))


def format_table(results: dict) -> str:
    """Plain-text, aligned comparison of transfer, from scratch, persistence and climatology."""
    m = results["metrics"]
    threshold = f"{results['evaluation']['hotspot_threshold_K']:g}"
    rows = _metric_rows(m, MODELS, threshold)
    rows.append(("meso fit time", "s", [m[k].get("fit_time_s") for k in MODELS]))
    d, ev = results["data"], results["evaluation"]
    t = results["timings_s"]
    test = d["meso_test"]
    title = (f"held-out meso samples: {test['sample']} x {test['time']} snapshots of {test['y']} x {test['x']}; "
             f"meso training samples: {d['meso_train']['sample']}; micro samples: {d['micro']['sample']}")
    no_hs = ev["no_hotspot_rmse"]
    rec = ", ".join(f"{f} {v:.2f}" for f, v in ev["micro_reconstruction_rmse_ratio"].items())
    footer = [
        f"predicting no hotspot: RMSE T_hs {no_hs['T_hs']:.1f} K, A_hs {no_hs['A_hs']:.1f} µm^2; "
        f"micro VAE on {d['micro_test']['sample']} held-out micro samples, RMSE / constant's: {rec}",
        f"micro fit {t['fit_micro']:.0f} s, simulation {t['simulate']:.0f} s, total {t['total']:.0f} s "
        f"(preset {results['preset']!r}); errors over time steps after the first, physical units",
    ]
    return "\n".join([title, *_aligned(("metric", "unit", *MODELS), rows), *footer])


def format_uncertainty_table(results: dict) -> str:
    """Per field: coverage, spread–skill ratio and CRPS of the transfer model's ensemble, before and after calibration."""
    u = results["uncertainty"]
    rows = []
    for set_name in ("held_out", "calibration"):
        for model in ("uncalibrated", "calibrated"):
            m = u[set_name][model]
            for f in m["crps"]:
                rows.append((set_name.replace("_", " "), model, f, m["coverage_1sigma"][f], m["coverage_2sigma"][f],
                             m["spread_skill"][f], m["crps"][f], u[set_name]["zero spread"]["crps"][f]))
    header = ("samples", "spread", "field", "cov ±1σ (0.683)", "cov ±2σ (0.954)", "spread/skill (1)", "CRPS",
              "CRPS zero spread")
    body = [(*r[:3], *(f"{v:.3g}" for v in r[3:])) for r in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(r):
        return "  ".join([c.ljust(w) for c, w in zip(r[:3], widths[:3])] + [c.rjust(w) for c, w in zip(r[3:], widths[3:])])

    rule = "-" * len(line(header))
    note = "CRPS in each field's physical units; calibration fitted on the 'calibration' samples only"
    return "\n".join([rule, line(header), rule, *map(line, body), rule, note])
