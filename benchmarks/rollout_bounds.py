"""Long meso rollouts with and without bounds on the latents: per-field and per-step R², hotspots.

Loads a demo's ``meso_pipeline.pkl`` (the transfer model), re-simulates the demo's meso samples
(seed ``--seed + 1``: 4 training, 4 held out) and rolls the 4 held-out ones out over all 19 meso
steps with each setting:

- ``latent_margin`` ∈ {None, 0, 0.1, 0.5}: the estimator's bound on the rolled-out latents (the
  training latents' per-channel range, widened by the margin on each side);
- ``reencode``: not an skmld option, for comparison: after every meso step the decoded fields
  (clipped to the training fields' range) are encoded again, a projection onto what the VAE
  knows.

Reports R² per field (over the times after the first) and per step, the F1 of the hot masks at
700 and 875 K, the excess heat above each threshold (truth and prediction, summed over samples,
times and pixels) and the climatology's R² (the training samples' mean at each time and cell).

Run alone: ``python benchmarks/rollout_bounds.py DEMO_DIR --seed 11``; appends to
``benchmarks/results/rollout_bounds.json``.
"""

import argparse
import json
import time
from pathlib import Path

import _common  # noqa: F401 (puts the checkout on sys.path)
import joblib
import numpy as np
import tensorflow as tf

from skmld import ClimatologyBaseline, _engine, _rollout, _trainer
from skmld._demo import PRESETS, configure_tensorflow
from skmld.datasets import make_pore_collapse
from skmld.metrics import hotspot_mask_scores, r2_per_field

RESULTS = Path(__file__).parent / "results" / "rollout_bounds.json"


def reencoding_rollout(est, x0, n_steps, lo, hi):
    """The mean rollout with a decode–clip–encode projection after every meso step."""
    nets, stepper = est._networks, est._networks.stepper()

    @tf.function
    def roll(x0, n):
        zm, zv = nets.encode(x0)
        out = tf.TensorArray(tf.float32, size=n + 1)
        for s in tf.range(n + 1):
            if s > 0:
                for _ in range(est._time_ratio):
                    zm, zv = stepper(zm, zv)
            x = tf.cast(nets.decode(zm), tf.float32)
            if s > 0:
                zm, zv = nets.encode(tf.clip_by_value(x, lo, hi))
            out = out.write(s, x)
        return _rollout._stack(out)

    return np.concatenate([roll(tf.constant(x0[i:i + 1]), tf.constant(n_steps)).numpy() for i in range(len(x0))])


def scores(truth, pred) -> dict:
    """Scores of a physical rollout ``pred`` (times after the first) against ``truth``."""
    r2 = r2_per_field(truth, pred)
    masks = hotspot_mask_scores(truth, pred, thresholds=(700.0, 875.0))
    per = [d for d in truth["temperature"].dims if d != "time"]
    step = {str(f): np.round((1 - ((truth[f] - pred[f]) ** 2).mean(per) / truth[f].var(per)).values, 2).tolist()
            for f in truth.data_vars}
    return {"r2": {str(f): round(float(r2.sel(field=f)), 3) for f in r2["field"].values},
            "f1": {f"{t:g}": round(float(v), 3) for t, v in zip(masks["threshold"].values, masks["f1"].values)},
            "excess_heat_pred": [float(v) for v in masks["excess_heat_pred"].values.round()],
            "excess_heat_true": [float(v) for v in masks["excess_heat_true"].values.round()],
            "max_T_per_step": pred["temperature"].max(per).values.round().tolist(),
            "r2_per_step": step}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("demo_dir", type=Path)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    configure_tensorflow(True)
    c = PRESETS["default"]
    pipe = joblib.load(args.demo_dir / "meso_pipeline.pkl")
    tok, est = pipe["tokens"], pipe[-1].estimator_
    meso = make_pore_collapse("meso", c.n_meso_train + c.n_meso_test, random_state=args.seed + 1)
    train, test = meso.isel(sample=slice(0, c.n_meso_train)), meso.isel(sample=slice(c.n_meso_train, None))
    x_train = est._to_arrays(tok.transform(train))[0]
    if "latent_range_" not in vars(est):  # a model fitted before the range was recorded: as fit computes it
        z = _engine.encode_all(est._networks, x_train, 16)[0]
        est.latent_range_ = _trainer.latent_range(z, np.arange(len(z)))
    test_tokens = tok.transform(test)
    x0, layout = est._to_arrays(test_tokens)
    truth = test.isel(time=slice(1, None))

    def physical(tokens):
        return tok.inverse_transform(tokens).isel(time=slice(1, None))

    climatology = physical(ClimatologyBaseline().fit(tok.transform(train)).predict(test_tokens))
    record = {"seed": args.seed, "demo_dir": str(args.demo_dir), "cpu": _common.cpu_model(),
              "climatology": scores(truth, climatology)["r2"],
              "settings": []}
    for margin in (None, 0.0, 0.1, 0.5):
        est.latent_margin = margin
        t0 = time.perf_counter()
        entry = {"setting": f"latent_margin={margin}", **scores(truth, physical(est.predict(test_tokens))),
                 "predict_s": round(time.perf_counter() - t0, 1)}
        record["settings"].append(entry)
        print(json.dumps({k: entry[k] for k in ("setting", "r2", "f1", "predict_s")}), flush=True)
    lo, hi = x_train.min(axis=(0, 1, 2, 3)), x_train.max(axis=(0, 1, 2, 3))
    t0 = time.perf_counter()
    pred = reencoding_rollout(est, x0[:, 0], x0.shape[1] - 1, lo, hi)
    pred = np.clip(pred, *_rollout.scaled_bounds(est.bounds_, est.ranges_, est.fields_))
    entry = {"setting": "reencode", **scores(truth, physical(est._from_arrays(pred, layout))),
             "predict_s": round(time.perf_counter() - t0, 1)}
    record["settings"].append(entry)
    print(json.dumps({k: entry[k] for k in ("setting", "r2", "f1", "predict_s")}), flush=True)
    print(json.dumps({"climatology": record["climatology"]}))
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps(old + [record], indent=1) + "\n")


if __name__ == "__main__":
    main()
