"""Shared pieces of the performance benchmarks.

* machine description (CPU model and flags, TensorFlow version, load average);
* a timer (warm-up call, then the median of several calls within a time budget);
* the reference rates: fp32 / bf16 ``tf.matmul`` and a 3×3 conv 64→64;
* useful FLOPs of training steps and rollouts, counted from the layer shapes;
* **the adapters**: the only functions here that touch skmld's engine
  (:func:`build_nets`, :func:`make_train_step`, :func:`make_rollout`). When
  the engine's signatures change, update these and nothing else.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))  # run from a checkout (or a snapshot of one) without installing

import flops as _flops

RESULTS = ROOT / "benchmarks" / "results"
FIELDS = ("temperature", "pressure", "microstructure")
GIGA = 1e9

# Paper sizes (DESIGN.md, "Paper scale") and tiny --quick sizes.
PAPER = {"filters": 64, "dynamics_filters": 64, "latent_channels": 4, "micro": (160, 256), "meso": (320, 480), "matmul": 4096,
             "conv": (8, 160, 256, 64), "micro_steps": 19, "meso_steps": 37, "draws": 16}
QUICK = {"filters": 8, "dynamics_filters": 8, "latent_channels": 4, "micro": (32, 64), "meso": (64, 96), "matmul": 1024,
         "conv": (2, 64, 64, 64), "micro_steps": 4, "meso_steps": 4, "draws": 4}


def sizes(quick: bool) -> dict:
    """The benchmark sizes: the paper's, or tiny ones with ``quick``."""
    return dict(QUICK if quick else PAPER)


# -- machine -------------------------------------------------------------------------------

def cpu_info() -> dict:
    """CPU model, SIMD-relevant flags (and all flags) from ``/proc/cpuinfo``."""
    model, flags = platform.processor() or "unknown", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    simd = [f for f in flags if f.startswith(("avx", "amx", "fma", "sse4", "f16c"))]
    return {"cpu_model": model, "simd_flags": simd, "all_flags": flags}


def mem_available() -> int:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (0 if unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine() -> dict:
    """Machine, software and current load."""
    import numpy as np
    import tensorflow as tf

    return {
        **cpu_info(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "mem_available_gb": mem_available() / 2**30,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "tensorflow": tf.__version__,
        "keras": __import__("keras").__version__,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "loadavg": os.getloadavg(),
    }


def write_json(name: str, payload: dict, quick: bool) -> Path:
    """Write ``benchmarks/results/perf[_quick]/<name>.json``."""
    out = RESULTS / ("perf_quick" if quick else "perf")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return path


# -- timing ---------------------------------------------------------------------------------

def timeit(fn, *, min_reps: int = 3, max_reps: int = 10, min_time: float = 3.0, budget: float = 90.0,
           warmup=None) -> dict:
    """Time ``fn()``: one warm-up call (includes tracing; ``warmup()`` if given), then repeated calls.

    Stops after ``max_reps``, or once ``min_reps`` calls took ``min_time`` in
    all, or when another call would exceed ``budget`` seconds (at least one
    timed call is always made). Returns the median, all times, the warm-up
    time and the load average before and after.
    """
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    (warmup or fn)()
    warmup_s = time.perf_counter() - t0
    times: list = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        spent = time.perf_counter() - start
        if len(times) >= max_reps or (len(times) >= min_reps and spent >= min_time):
            break
        if spent + statistics.median(times) > budget:
            break
    return {"median_s": statistics.median(times), "times_s": times, "reps": len(times), "warmup_s": warmup_s,
            "loadavg_before": load_before, "loadavg_after": os.getloadavg()}


def rates(quick: bool) -> dict:
    """GFLOP/s of fp32 and bf16 ``tf.matmul`` n³ and of a 3×3 conv 64→64 (same process, now)."""
    import tensorflow as tf

    s = sizes(quick)
    n = s["matmul"]
    b, h, w, c = s["conv"]
    out = {"matmul_n": n, "conv_shape": [b, h, w, c, c]}
    for dtype, tag in ((tf.float32, "fp32"), (tf.bfloat16, "bf16")):
        a = tf.cast(tf.random.normal((n, n)), dtype)
        bm = tf.cast(tf.random.normal((n, n)), dtype)
        mm = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, bm)[:1, :1], tf.float32)))  # noqa: B023
        r = timeit(lambda: mm().numpy(), min_reps=5, max_reps=10, min_time=2.0, budget=30)  # noqa: B023
        out[f"matmul_{tag}_gflops"] = 2 * n**3 / r["median_s"] / GIGA
        out[f"matmul_{tag}_timing"] = r
        x = tf.cast(tf.random.normal((b, h, w, c)), dtype)
        k = tf.cast(tf.random.normal((3, 3, c, c)), dtype)
        conv = tf.function(lambda: tf.reduce_sum(tf.cast(
            tf.nn.conv2d(x, k, 1, "SAME")[:1, :1, :1], tf.float32)))  # noqa: B023
        r = timeit(lambda: conv().numpy(), min_reps=5, max_reps=10, min_time=2.0, budget=30)  # noqa: B023
        out[f"conv_{tag}_gflops"] = 2 * 9 * c * c * b * h * w / r["median_s"] / GIGA
        out[f"conv_{tag}_timing"] = r
    return out


# -- adapters: the only calls into skmld's engine ---------------------------------------------

def build_nets(s: dict, precision: str = "float32", seed: int = 0):
    """Fresh micro networks (3 fields) at sizes ``s``; ``precision`` sets the layers' dtype policy."""
    import keras

    from skmld.micro import build_networks

    keras.utils.set_random_seed(seed)
    return build_networks(list(FIELDS), latent_channels=s["latent_channels"], filters=s["filters"], kernel_size=3,
                          dynamics="unet", dynamics_filters=s["dynamics_filters"], dropout=0.1,
                          dtype=None if precision == "float32" else precision)


def copy_weights(src, dst) -> None:
    """Copy every network's weights from one bundle to another (e.g. fp32 → bf16)."""
    for name, model in src.models.items():
        dst.models[name].set_weights(model.get_weights())


def fit_small_model(x, *, filters: int, vae_epochs: int, dynamics_epochs: int, seed: int = 0):
    """ADAPTER — fit a float32 MicroDynamicsEstimator on scaled fields ``(N, T, H, W, F)``; its networks."""
    import numpy as np
    import xarray as xr

    from skmld import MicroDynamicsEstimator

    da = xr.DataArray(np.moveaxis(x, -1, 2), dims=("sample", "time", "field", "y", "x"),
                      coords={"field": list(FIELDS)})
    est = MicroDynamicsEstimator(filters=filters, dynamics_filters=filters, horizons=(1,), vae_epochs=vae_epochs,
                                 decoupled_epochs=dynamics_epochs, coupled_epochs=dynamics_epochs, batch_size=8,
                                 learning_rate=1e-3, on_divergence="restore", random_state=seed).fit(da)
    return est._networks


@dataclass
class StageSpec:
    """A dynamics training stage as the estimators define it."""

    name: str
    time_ratio: int
    coupled: bool
    train_decoupled: bool
    train_coupled: bool
    trainable: list = field(default_factory=list)


def stage_spec(name: str, fields=FIELDS) -> StageSpec:
    """``"decoupled"``, ``"coupled"`` (micro) or ``"meso"`` (frozen backbone, time ratio 2)."""
    decoupled = [f"{k}/{f}" for f in fields for k in ("decoupled_mean", "decoupled_log_var")]
    if name == "decoupled":
        return StageSpec(name, 1, False, True, False, decoupled)
    coupled = ["coupled_mean", "coupled_log_var"]
    if name == "coupled":
        return StageSpec(name, 1, True, False, True, coupled)
    if name == "meso":
        return StageSpec(name, 2, True, False, True, coupled)
    raise ValueError(name)


def make_train_step(nets, data, spec: StageSpec, horizon: int, batch: int, precision: str = "float32",
                    seed: int = 0, jit: bool = False, chunk: int | None = None):
    """ADAPTER — one dynamics training step as ``_trainer.Trainer.make_steps`` builds it, on a fixed batch.

    ``data = (z_mean, z_log_var, x)``: numpy arrays ``(N, T, h, w, F*C)`` and
    ``(N, T, H, W, F)`` with ``N >= batch`` and ``T >= horizon + 1``; the batch
    is the windows starting at ``t = 0`` of the first ``batch`` samples.
    ``jit``: XLA (``jit_compile``); ``chunk``: rows back-propagated at once
    (``gradient_chunk_size``; engines before it have no such argument).
    Returns ``(step, concrete)``: ``step()`` runs one step and blocks until it
    is done; ``concrete()`` is the step traced with static shapes (for
    counting executed FLOPs). Works with the engine's step signature before
    the distribution rewrite (``sampler=``, steps on index vectors) and after
    it (``strategy=``, steps on a batch dict with ``pos``/``count``/``key``).
    """
    import inspect

    import numpy as np
    import tensorflow as tf

    from skmld import _engine

    variables = nets.variables(spec.trainable)
    optimizer = _engine.make_optimizer(1e-4, precision)
    optimizer.build(variables)
    weights = {"latent_mean": 1.0, "latent_log_var": 1.0, "multistep": 1.0, "reconstruction": 1.0, "kl": 1.0,
               "edge": 1.0}
    common = {"horizon": horizon, "time_ratio": spec.time_ratio, "coupled": spec.coupled,
                  "train_decoupled": spec.train_decoupled, "train_coupled": spec.train_coupled, "weights": weights,
                  "optimizer": optimizer, "variables": variables, "jit": jit}
    params = inspect.signature(_engine.make_dynamics_step).parameters
    if chunk is not None:
        common["chunk"] = chunk
    if "sampler" in params:  # engine of commit 192a4df: data inside the step, batches are index vectors
        from skmld.nn.vae import Sampling

        tensors = tuple(tf.constant(a) for a in data)
        train_step, _ = _engine.make_dynamics_step(nets, tensors, sampler=Sampling(seed=seed), **common)
        args = (tf.constant(np.arange(batch, dtype=np.int32)), tf.constant(np.zeros(batch, np.int32)))
        fn, specs = train_step.python_function, [tf.TensorSpec([batch], tf.int32)] * 2
    else:  # distribution-aware engine (d7c40f7): a batch dict of windows
        zm, zv, x = data
        batch_dict = {"z_mean": zm[:batch, : horizon + 1], "z_log_var": zv[:batch, : horizon + 1],
                      "x": x[:batch, 1 : horizon + 1], "pos": np.arange(batch, dtype=np.int32),
                      "count": np.full(batch, batch, np.int32),
                      "key": np.tile(np.array([seed, 0], np.int32), (batch, 1))}
        args = ({k: tf.constant(np.ascontiguousarray(v)) for k, v in batch_dict.items()},)
        static = {k: tf.TensorSpec(v.shape, v.dtype) for k, v in args[0].items()}
        if "spec" in params:  # element specs of the (distributed, plain) datasets: any batch size
            any_batch = {k: tf.TensorSpec((None, *v.shape[1:]), v.dtype) for k, v in static.items()}
            common["spec"] = (any_batch, any_batch)
        train_step, _ = _engine.make_dynamics_step(nets, global_batch=batch, strategy=tf.distribute.get_strategy(),
                                                   **common)
        fn, specs = train_step.python_function, [static]

    def step():
        return float(train_step(*args)["loss"])

    def concrete():
        return tf.function(fn).get_concrete_function(*specs)

    return step, concrete


def make_rollout(nets, time_ratio: int, jit: bool = False):
    """ADAPTER — the compiled rollouts of ``_prediction.PredictionMixin._rollout`` (``jit``: with XLA).

    Returns ``(run, concrete)``: ``run(x0, n_steps, n_draws, seed)`` returns
    numpy ``(mean, std)`` fields ``(B, n_steps + 1, H, W, F)`` (the mean
    rollout, and the std of an ``n_draws``-member trajectory ensemble, zeros
    without draws); ``concrete(shape, n_steps, n_draws)`` traces it for a static
    ``x0`` shape. The ensemble steps every member through the dynamics, which
    :meth:`Counter.rollout` (decodes only) does not count.
    """
    import numpy as np
    import tensorflow as tf

    from skmld import _rollout

    unbounded = np.full(len(nets.fields), np.inf, np.float32)
    mean_fn = _rollout.make_rollout(nets, time_ratio, jit, -unbounded, unbounded).python_function
    ensemble_fn = _rollout.make_ensemble(nets, time_ratio, jit, -unbounded, unbounded).python_function

    @tf.function(jit_compile=jit, reduce_retracing=True)
    def fn(x0, n_steps, n_draws, seed):
        mean = mean_fn(x0, n_steps)[0]
        std = tf.cond(n_draws > 0, lambda: ensemble_fn(x0, n_steps, n_draws, seed, False)[1],
                      lambda: tf.zeros_like(mean))
        return mean, std

    def run(x0, n_steps, n_draws, seed=0):
        out = fn(tf.constant(x0), tf.constant(n_steps), tf.constant(n_draws), tf.constant(seed))
        return out[0].numpy(), out[1].numpy()

    def concrete(shape, n_steps, n_draws):
        return tf.function(fn.python_function).get_concrete_function(
            tf.TensorSpec(shape, tf.float32), tf.constant(n_steps), tf.constant(n_draws), tf.constant(0))

    return run, concrete


# -- useful FLOPs --------------------------------------------------------------------------------

class Counter:
    """Per-sample forward FLOPs of each network of a bundle at a given field size."""

    def __init__(self, nets, field_shape: tuple):
        h, w = field_shape
        c, n = nets.latent_channels, len(nets.fields)
        lh, lw = h // 8, w // 8
        f = nets.fields[0]
        fwd = _flops.forward_flops
        # Fields share architectures: count one and multiply by the number of fields.
        self.n_fields = n
        self.encoder = fwd(nets.models[f"encoder/{f}"], (h, w, 1))
        self.decoder = fwd(nets.models[f"decoder/{f}"], (lh, lw, c))
        self.decoupled = (fwd(nets.models[f"decoupled_mean/{f}"], (lh, lw, c))
                          + fwd(nets.models[f"decoupled_log_var/{f}"], (lh, lw, 2 * c)))
        self.coupled = (fwd(nets.models["coupled_mean"], (lh, lw, n * c))
                        + fwd(nets.models["coupled_log_var"], (lh, lw, 2 * n * c)))
        self.decoder_activations = _flops.activation_elements(nets.models[f"decoder/{f}"], (lh, lw, c))

    def train(self, spec: StageSpec, horizon: int, batch: int) -> dict:
        """Useful FLOPs of one training step, by part.

        Trained parts count 3× their forward (forward, input gradient, weight
        gradient); frozen parts 2× (forward + input gradient) when a trained
        part lies upstream of them and their output feeds the loss, else 1×.
        Only predicted steps are decoded (the initial frame feeds no loss).
        """
        F = self.n_fields
        sub = horizon * spec.time_ratio
        parts = {"decoders": 2 * horizon * F * self.decoder}
        if spec.train_decoupled:
            parts["decoupled"] = 3 * sub * F * self.decoupled
        else:  # frozen; needs its input gradient from the 2nd sub-step on (the coupled pair lies upstream)
            parts["decoupled"] = (1 + 2 * (sub - 1)) * F * self.decoupled
        if spec.coupled:
            parts["coupled"] = 3 * sub * self.coupled if spec.train_coupled else 2 * sub * self.coupled
        parts = {k: v * batch for k, v in parts.items()}
        parts["total"] = sum(parts.values())
        return parts

    def rollout(self, time_ratio: int, n_steps: int, n_draws: int, batch: int) -> dict:
        """Useful FLOPs of a rollout: encode the initial frame, step, decode every step (mean + draws)."""
        F = self.n_fields
        parts = {"encoders": F * self.encoder,
                 "dynamics": n_steps * time_ratio * (F * self.decoupled + self.coupled),
                 "decoders": (n_steps + 1) * (1 + n_draws) * F * self.decoder}
        parts = {k: v * batch for k, v in parts.items()}
        parts["total"] = sum(parts.values())
        return parts

    def train_memory(self, horizon: int, batch: int) -> int:
        """Rough bytes that back-propagation through the frozen decoders keeps (fp32).

        Every layer output of every decode, × 1.5 for the pre-activation values
        that the LeakyReLU gradient also keeps.
        """
        return int(1.5 * 4 * self.decoder_activations * self.n_fields * horizon * batch)


def executed(concrete_fn, trips=(), if_fraction: float = 1.0) -> dict:
    """Executed conv/matmul FLOPs of a traced function (see :func:`flops.graph_flops`)."""
    by_type = _flops.graph_flops(concrete_fn.graph, trips, if_fraction)
    return {"by_type": by_type, "total": _flops.total(by_type)}


def fake_dynamics_data(s: dict, field_shape: tuple, n: int, t: int, seed: int = 0):
    """Random encodings and fields of the right shapes: a training step's cost does not depend on values."""
    import numpy as np

    rng = np.random.default_rng(seed)
    h, w = field_shape
    fc = s["latent_channels"] * len(FIELDS)
    zm = rng.standard_normal((n, t, h // 8, w // 8, fc), dtype=np.float32)
    zv = np.full_like(zm, -2.0)
    x = rng.random((n, t, h, w, len(FIELDS)), dtype=np.float32)
    return zm, zv, x


def utilisation(useful: float, seconds: float, r: dict, precision: str) -> dict:
    """Useful GFLOP/s and its fraction of the fp32 (and bf16) matmul rate."""
    g = useful / seconds / GIGA
    out = {"useful_gflops_per_s": g, "frac_fp32_matmul": g / r["matmul_fp32_gflops"]}
    if precision != "float32":
        out["frac_bf16_matmul"] = g / r["matmul_bf16_gflops"]
    return out
