"""MicroDynamicsEstimator: per-field VAEs and decoupled + coupled latent dynamics."""

from __future__ import annotations

from numbers import Integral, Real

from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from skmld import _engine
from skmld._base import LatentDynamicsEstimator, Stage, _per_horizon
from skmld.nn import build_decoder, build_dynamics, build_encoder
from skmld.nn.dynamics import DYNAMICS

def build_networks(fields, *, latent_channels, filters, kernel_size, dynamics, dynamics_filters, dropout, dtype,
                   stats=None):
    """Fresh networks for ``fields``: VAE, decoupled pair per field, one coupled pair.

    ``stats``: field → ``(mean, variance)`` of the training data, which the VAEs standardise with.
    """
    c, n = latent_channels, len(fields)
    models = {}
    for f in fields:
        mean, var = (stats or {}).get(f, (None, None))
        models[f"encoder/{f}"] = build_encoder(filters, c, kernel_size, mean=mean, variance=var, dtype=dtype,
                                               name=f"encoder_{f}")
        models[f"decoder/{f}"] = build_decoder(filters, c, kernel_size, mean=mean, variance=var, dtype=dtype,
                                               name=f"decoder_{f}")
        models[f"decoupled_mean/{f}"] = build_dynamics(
            dynamics, c, c, dynamics_filters, dropout, dtype=dtype, name=f"decoupled_mean_{f}")
        models[f"decoupled_log_var/{f}"] = build_dynamics(
            dynamics, 2 * c, c, dynamics_filters, dropout, dtype=dtype, name=f"decoupled_log_var_{f}")
    models["coupled_mean"] = build_dynamics(dynamics, n * c, n * c, dynamics_filters, dropout, dtype=dtype,
                                            name="coupled_mean")
    models["coupled_log_var"] = build_dynamics(dynamics, 2 * n * c, n * c, dynamics_filters, dropout, dtype=dtype,
                                               name="coupled_log_var")
    return _engine.Networks(models, list(fields), c)


class MicroDynamicsEstimator(LatentDynamicsEstimator):
    """Probabilistic latent model of the micro-scale dynamics of coupled fields.

    Learns, per field, a VAE (VGG-style encoder, mirrored decoder, spatial /8)
    and a *decoupled* pair of latent evolution networks (mean map z̄ → z̄′,
    log-variance map [z̄, zσ] → zσ′), then a *coupled* pair on all fields'
    latents. One micro step = decoupled step then coupled step. Training runs
    three stages: VAEs; decoupled pairs (VAEs frozen); coupled pair (all else
    frozen); the last two with curriculum learning over ``horizons``.

    Each token of the input is an independent building block; the fitted
    networks are fully convolutional and are reused by
    :class:`~skmld.MesoDynamicsEstimator` on whole meso domains.

    Parameters
    ----------
    latent_channels : int, default=4
        Latent channels per field.
    filters : int, default=64
        Width of the VAE's first block (then 2×, 4×, 8×).
    kernel_size : int, default=3
        Kernel of the VAE's conv units.
    dynamics : {"unet", "resnet"}, default="unet"
        Latent evolution network.
    dynamics_filters : int, default=64
        Base width of the latent evolution networks.
    dropout : float, default=0.1
        Dropout on the evolution networks' input.
    horizons : sequence of int, default=(1, 2, 3)
        Curriculum of prediction horizons; the weights at horizon k start k+1.
    vae_epochs : int, default=50
        Epochs of the VAE stage.
    decoupled_epochs, coupled_epochs : int or sequence of int, default=20
        Epochs per horizon of the decoupled and coupled stages.
    learning_rate : float, default=1e-4
        Adam learning rate (β₁ = 0.5, β₂ = 0.99, as in the paper), constant.
    batch_size : int, default=1
        Frames (VAE) or windows (dynamics) per step; the paper uses 1.
    gradient_chunk_size : int or None, default=None
        Rows of a batch back-propagated at once: a step computes the loss terms
        and gradients of its batch this many rows at a time and sums them before
        the one update. The step is the same as with the whole batch at once (up
        to float rounding; dropout masks are drawn per chunk), and its activation
        memory that of one chunk: back-propagating through the frozen decoders
        keeps ≈ 1.2 GB per window and predicted step at 160 × 256 tokens
        (64 filters, float32).
        ``None``: the whole batch at once.
    validation_fraction : float, default=0.0
        Fraction of samples held out; their losses go into ``history_`` as ``val_*``.
    vae_loss : {"calibrated", "sse"}, default="calibrated"
        Reconstruction term of the VAE loss. ``"calibrated"``: the Gaussian
        negative log-likelihood of each field with its pixel variance set to
        the field's running reconstruction MSE (a calibrated decoder), so the
        balance against the KL follows the reconstruction and no field is left
        at its mean because its variations are small on the [0, 1] scale.
        ``"sse"``: the summed squared error (pixel variance fixed at 1/2), as in
        the reference; at demo scale it leaves temperature and microstructure
        at their means (see docs/model.md).
    reconstruction_weight, kl_weight, edge_weight : float, default=1.0
        VAE loss weights (reconstruction term, KL, edge-boosting MAE).
    latent_mean_weight, latent_log_var_weight : float, default=1.0
        Weights of the latent consistency terms of the dynamics loss.
    multistep_weight : float, default=1.0
        Weight of the dynamics loss's multi-step reconstruction MSE (fields
        decoded from sampled latents at every predicted step).
    multistep_normalization : {"variance", "none"}, default="variance"
        ``"variance"``: each field's multi-step MSE is divided by that field's
        variance in the training data, so every field counts by how well its
        structure is predicted, not by its spread on the [0, 1] scale.
        ``"none"``: plain MSEs summed over fields.
    latent_margin : float or None, default=0.0
        Rollouts keep every channel of the predicted latent means within the
        range the training latents span (``latent_range_``), widened by
        ``latent_margin`` times that range on each side: a latent map that extrapolates beyond its
        training data cannot then grow without bound over a long rollout.
        ``None``: no bound. Used by ``predict`` only; change it with
        ``set_params`` after ``fit``.
    on_divergence : {"raise", "restore"}, default="raise"
        On a NaN/inf loss: raise :class:`~skmld.exceptions.DivergenceError`
        (keeping the last good weights), or roll back the epoch, halve the
        learning rate and retry (at most 3 times).
    device : {"auto", "cpu", "gpu"}, default="auto"
        ``"auto"`` uses a GPU when TensorFlow sees one.
    precision : {"float32", "mixed_bfloat16", "mixed_float16"}, default="float32"
        Compute dtype of the networks (variables stay float32).
    jit_compile : bool, default=False
        Compile training steps and rollouts with XLA.
    verbose : int, default=0
        Progress bars (one per stage and horizon) when > 0.
    random_state : int, RandomState or None, default=None
        Seeds weights, shuffling, sampling and validation split: reproducible on CPU.
    checkpoint_dir : str or path-like, default=None
        Write a checkpoint after every epoch (atomically) to this directory; a fit
        with the same directory, parameters and data resumes after the last
        completed epoch and ends as the uninterrupted fit would (on CPU).
    distribute : tf.distribute.Strategy, default=None
        Train on the strategy's replicas (e.g. ``MirroredStrategy()`` over the
        GPUs of a machine, ``MultiWorkerMirroredStrategy()`` over machines):
        networks and optimizers are created in its scope and every global batch
        of ``batch_size`` is split across the replicas, with the same losses,
        gradients and latent noise as on one device. ``None``: one device (see
        ``device``). Not stored by ``save`` or pickle; see docs/scaling.md.
    cache : {"auto", "memory", "disk"} or path, default="auto"
        Where the encoded latents of the dynamics stages live: in memory, in a
        temporary Zarr store (deleted after ``fit``), or in Zarr stores under
        the given directory (kept). ``"auto"``: on disk for dask-backed ``X``
        (e.g. from :func:`skmld.open_fields`), else in memory.

    Attributes
    ----------
    fields_ : list of str
        Field names, in order.
    ranges_ : dict or None
        Per-field scaling ranges recorded by the tokenizer (``None`` for plain input).
    token_shape_ : tuple of int
        ``(patch_y, patch_x)`` of the tokens fitted on.
    latent_shape_ : tuple of int
        ``(latent_y, latent_x, latent_channels)`` of one token.
    history_ : list of dict
        One record per (stage, horizon, epoch): ``stage``, ``horizon`` (0 for the
        VAE), ``epoch``, each loss term, and ``val_*`` terms with validation.
        VAE records also hold every term per field (``reconstruction_<field>``,
        ``kl_<field>``, ``edge_<field>``, ``mse_<field>``) and the KL of each
        latent channel (``kl_<field>_c<k>``), so a field whose latent carries
        no information shows.
    reconstruction_rmse_ratio_ : dict
        After the VAE stage, per field: RMSE of the reconstruction from the
        latent means over the field's standard deviation, on up to 128 training
        (or validation) frames. 0 is perfect, 1 a constant field at the mean;
        above 0.8 a ``UserWarning`` names the field.
    field_variance_ : dict
        Per field, the variance of the (scaled) training data.
    latent_range_ : ndarray of shape (2, n_fields * latent_channels)
        Minimum and maximum of each latent channel's means over the encoded
        training trajectories (see ``latent_margin``).
    units_ : dict of str to str
        Units of the fields that have them (the tokens' ``units`` coordinate).
    spacing_ : (float or None, float or None)
        Grid spacing along ``y`` and ``x`` of the data fitted on (the tokens'
        ``skmld_spacing``), ``None`` where unknown.
    time_step_ : float or None
        Step of the data's numeric ``time`` coordinate, ``None`` without one.
        :class:`~skmld.MesoDynamicsEstimator` compares these three with its
        meso data and derives its ``time_ratio`` from ``time_step_``.

    See Also
    --------
    PatchTokenizer : fields to tokens and back.
    MesoDynamicsEstimator : transfer the fitted model to the meso scale.

    Examples
    --------
    >>> from sklearn.pipeline import Pipeline
    >>> from skmld import PatchTokenizer, MicroDynamicsEstimator
    >>> from skmld.datasets import make_pore_collapse
    >>> X = make_pore_collapse("micro", 2, shape=(32, 32), n_steps=4, random_state=0)
    >>> pipe = Pipeline([("tokens", PatchTokenizer()),
    ...                  ("micro", MicroDynamicsEstimator(filters=2, dynamics_filters=2, horizons=(1,),
    ...                                                   vae_epochs=1, decoupled_epochs=1,
    ...                                                   coupled_epochs=1, batch_size=4,
    ...                                                   random_state=0))]).fit(X)
    >>> pipe.predict(X).dims
    ('sample', 'time', 'field', 'token_y', 'token_x', 'patch_y', 'patch_x')
    """

    _per_horizon_params = ("decoupled_epochs", "coupled_epochs")

    _parameter_constraints: dict = {
        **LatentDynamicsEstimator._parameter_constraints,
        "latent_channels": [Interval(Integral, 1, None, closed="left")],
        "filters": [Interval(Integral, 1, None, closed="left")],
        "kernel_size": [Interval(Integral, 1, None, closed="left")],
        "dynamics": [StrOptions(set(DYNAMICS))],
        "dynamics_filters": [Interval(Integral, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "vae_epochs": [Interval(Integral, 0, None, closed="left")],
        "decoupled_epochs": [Interval(Integral, 0, None, closed="left"), "array-like"],
        "coupled_epochs": [Interval(Integral, 0, None, closed="left"), "array-like"],
    }

    def __init__(
        self,
        *,
        latent_channels: int = 4,
        filters: int = 64,
        kernel_size: int = 3,
        dynamics: str = "unet",
        dynamics_filters: int = 64,
        dropout: float = 0.1,
        horizons=(1, 2, 3),
        vae_epochs: int = 50,
        decoupled_epochs=20,
        coupled_epochs=20,
        learning_rate: float = 1e-4,
        batch_size: int = 1,
        gradient_chunk_size: int | None = None,
        validation_fraction: float = 0.0,
        vae_loss: str = "calibrated",
        reconstruction_weight: float = 1.0,
        kl_weight: float = 1.0,
        edge_weight: float = 1.0,
        latent_mean_weight: float = 1.0,
        latent_log_var_weight: float = 1.0,
        multistep_weight: float = 1.0,
        multistep_normalization: str = "variance",
        latent_margin: float | None = 0.0,
        on_divergence: str = "raise",
        device: str = "auto",
        precision: str = "float32",
        jit_compile: bool = False,
        verbose: int = 0,
        random_state=None,
        checkpoint_dir=None,
        distribute=None,
        cache="auto",
    ):
        self.latent_channels = latent_channels
        self.filters = filters
        self.kernel_size = kernel_size
        self.dynamics = dynamics
        self.dynamics_filters = dynamics_filters
        self.dropout = dropout
        self.horizons = horizons
        self.vae_epochs = vae_epochs
        self.decoupled_epochs = decoupled_epochs
        self.coupled_epochs = coupled_epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.gradient_chunk_size = gradient_chunk_size
        self.validation_fraction = validation_fraction
        self.vae_loss = vae_loss
        self.reconstruction_weight = reconstruction_weight
        self.kl_weight = kl_weight
        self.edge_weight = edge_weight
        self.latent_mean_weight = latent_mean_weight
        self.latent_log_var_weight = latent_log_var_weight
        self.multistep_weight = multistep_weight
        self.multistep_normalization = multistep_normalization
        self.latent_margin = latent_margin
        self.on_divergence = on_divergence
        self.device = device
        self.precision = precision
        self.jit_compile = jit_compile
        self.verbose = verbose
        self.random_state = random_state
        self.checkpoint_dir = checkpoint_dir
        self.distribute = distribute
        self.cache = cache

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train VAEs, then decoupled, then coupled latent dynamics on ``X``.

        Parameters
        ----------
        X : xarray.DataArray or xarray.Dataset
            Tokens from :class:`~skmld.PatchTokenizer` (each token an independent
            sample), or plain fields already scaled to about [0, 1].
        y : None
            Ignored: the target is ``X``'s own future.

        Returns
        -------
        self
        """
        return self._fit(X)

    def _make_networks(self, fields, ranges, token_shape, stats=None):
        return build_networks(
            fields, latent_channels=self.latent_channels, filters=self.filters, kernel_size=self.kernel_size,
            dynamics=self.dynamics, dynamics_filters=self.dynamics_filters, dropout=self.dropout,
            dtype=self._dtype(), stats=stats,
        )

    def _stages(self):
        horizons = self._check_horizons()
        fields = self.fields_
        return [
            Stage("vae", _engine.network_names(_engine.VAE, fields), (self.vae_epochs,)),
            Stage("decoupled", _engine.network_names(_engine.DECOUPLED, fields),
                  _per_horizon(self.decoupled_epochs, horizons, "decoupled_epochs"), horizons,
                  coupled=False, train_decoupled=True),
            Stage("coupled", list(_engine.COUPLED), _per_horizon(self.coupled_epochs, horizons, "coupled_epochs"),
                  horizons, coupled=True, train_coupled=True),
        ]
