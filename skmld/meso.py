"""MesoDynamicsEstimator: micro building blocks transferred to the meso scale."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping
from numbers import Integral, Real

import keras
import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from skmld import _engine
from skmld._base import LatentDynamicsEstimator, Stage, _per_horizon
from skmld._state import Slot, is_int
from skmld._trainer import user_stacklevel
from skmld.micro import MicroDynamicsEstimator, build_networks
from skmld.nn.dynamics import DYNAMICS

FREEZABLE = ("vae", "decoupled")
# Architecture parameters: taken from the backbone when there is one, else the micro defaults.
_ARCH = {name: inspect.signature(MicroDynamicsEstimator).parameters[name].default for name in
         ("latent_channels", "filters", "kernel_size", "dynamics", "dynamics_filters", "dropout")}
#: ``time_ratio="auto"`` where a time step is unknown (the paper's ratio), and the largest one it derives.
_DEFAULT_RATIO, _MAX_RATIO = 2, 100


class MesoDynamicsEstimator(LatentDynamicsEstimator):
    """Meso-scale latent dynamics learnt from a few meso simulations.

    With a fitted :class:`~skmld.MicroDynamicsEstimator` as ``backbone``, the
    meso token grid is reassembled into the whole domain, encoded with the
    backbone's (convolutional) encoders, and stepped by a model whose decoupled
    pairs are the backbone's and whose coupled pair starts from the backbone's
    coupled pair and learns the cross-token coupling on the meso data. One
    meso step is ``time_ratio`` micro steps. Parts named in ``freeze`` stay
    bit-identical; the others are fine-tuned on copies (the backbone itself is
    never modified).

    With ``backbone=None`` the same architecture is trained from scratch on
    the meso data alone (VAEs, decoupled pairs, coupled pair): the baseline
    that tells what the transfer buys.

    Parameters
    ----------
    backbone : MicroDynamicsEstimator or None, default=None
        A fitted micro estimator. :func:`sklearn.base.clone` keeps it as it is
        (fitted), so cross-validation never refits or unfits it.
    time_ratio : int or "auto", default="auto"
        Micro steps per meso step. ``"auto"``: the meso data's time step over
        the backbone's (``time_step_``), which must be a whole number (1 to
        100); where either is unknown (no numeric ``time`` coordinate, a
        backbone fitted by skmld before it recorded its time step) 2, with a
        ``UserWarning`` when there is a backbone. An int is checked against
        both time steps where they are known.
    freeze : sequence of {"vae", "decoupled"}, default=("vae",)
        Backbone parts kept frozen. An unfrozen VAE is fine-tuned in a first
        stage; unfrozen decoupled pairs train with the coupled pair. The
        default fine-tunes the decoupled pairs: on held-out meso samples of the
        demo it raised the mean per-field R² from 0.21 to 0.80 (the pairs
        learnt on micro domains slow the shock down on larger ones; see
        docs/model.md).
    horizons : sequence of int, default=(1, 2, 3)
        Curriculum of meso prediction horizons.
    epochs : int or sequence of int, default=20
        Epochs per horizon of the meso (coupled) stage.
    vae_epochs : int, default=50
        Epochs of the VAE stage (from scratch, or unfrozen VAE).
    decoupled_epochs : int or sequence of int, default=20
        Epochs per horizon of the decoupled stage (from scratch only).
    latent_channels, filters, kernel_size, dynamics, dynamics_filters, dropout : default=None
        Architecture, as for :class:`~skmld.MicroDynamicsEstimator`. ``None``
        takes the backbone's (or the micro defaults from scratch); a value that
        contradicts the backbone raises ``ValueError``.
    learning_rate, batch_size, gradient_chunk_size, validation_fraction, vae_loss, reconstruction_weight, \
kl_weight, edge_weight, latent_mean_weight, latent_log_var_weight, multistep_weight, multistep_normalization, \
latent_margin, on_divergence, device, precision, jit_compile, verbose, random_state, checkpoint_dir, distribute, cache :
        As for :class:`~skmld.MicroDynamicsEstimator`.

    Attributes
    ----------
    fields_, ranges_, token_shape_, latent_shape_, history_, field_variance_, latent_range_ :
        As for :class:`~skmld.MicroDynamicsEstimator` (``reconstruction_rmse_ratio_``
        too, when this estimator trains VAEs); ``token_shape_`` is the
        backbone's token shape (the tokens the domain is made of).
    units_, spacing_, time_step_ :
        Field units, grid spacing and time step of the meso data, as for
        :class:`~skmld.MicroDynamicsEstimator`. ``fit`` refuses meso data
        whose fields, field units, scaling ranges or grid spacing differ from
        the backbone's, or whose time step is not ``time_ratio_`` times the
        backbone's, with one ``ValueError`` that names every difference.
    time_ratio_ : int
        Micro steps per meso step used (``time_ratio``, resolved).

    Examples
    --------
    >>> from sklearn.pipeline import Pipeline
    >>> from skmld import PatchTokenizer, MicroDynamicsEstimator, MesoDynamicsEstimator
    >>> from skmld.datasets import make_pore_collapse
    >>> tiny = dict(filters=2, dynamics_filters=2, horizons=(1,), vae_epochs=1, batch_size=4, random_state=0)
    >>> micro_X = make_pore_collapse("micro", 2, shape=(32, 32), n_steps=4, random_state=0)
    >>> micro = Pipeline([("tokens", PatchTokenizer()),
    ...                   ("micro", MicroDynamicsEstimator(decoupled_epochs=0, coupled_epochs=1, **tiny))]).fit(micro_X)
    >>> meso_X = make_pore_collapse("meso", 1, shape=(64, 64), n_steps=3, random_state=1)
    >>> meso = Pipeline([("tokens", PatchTokenizer(patch_size=micro["tokens"].token_shape_,
    ...                                           ranges=micro["tokens"].ranges_)),
    ...                  ("meso", MesoDynamicsEstimator(micro["micro"], epochs=1, horizons=(1,),
    ...                                                 batch_size=4, random_state=0))]).fit(meso_X)
    >>> meso.predict(meso_X).sizes["token_y"]
    2
    """

    _whole_domain = True

    _per_horizon_params = ("epochs", "decoupled_epochs")

    _parameter_constraints: dict = {
        **LatentDynamicsEstimator._parameter_constraints,
        "backbone": [None, LatentDynamicsEstimator],
        "time_ratio": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "freeze": ["array-like"],
        "epochs": [Interval(Integral, 0, None, closed="left"), "array-like"],
        "vae_epochs": [Interval(Integral, 0, None, closed="left")],
        "decoupled_epochs": [Interval(Integral, 0, None, closed="left"), "array-like"],
        "latent_channels": [None, Interval(Integral, 1, None, closed="left")],
        "filters": [None, Interval(Integral, 1, None, closed="left")],
        "kernel_size": [None, Interval(Integral, 1, None, closed="left")],
        "dynamics": [None, StrOptions(set(DYNAMICS))],
        "dynamics_filters": [None, Interval(Integral, 1, None, closed="left")],
        "dropout": [None, Interval(Real, 0, 1, closed="left")],
    }

    def __init__(
        self,
        backbone=None,
        *,
        time_ratio: int | str = "auto",
        freeze=("vae",),
        horizons=(1, 2, 3),
        epochs=20,
        vae_epochs: int = 50,
        decoupled_epochs=20,
        latent_channels: int | None = None,
        filters: int | None = None,
        kernel_size: int | None = None,
        dynamics: str | None = None,
        dynamics_filters: int | None = None,
        dropout: float | None = None,
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
        self.backbone = backbone
        self.time_ratio = time_ratio
        self.freeze = freeze
        self.horizons = horizons
        self.epochs = epochs
        self.vae_epochs = vae_epochs
        self.decoupled_epochs = decoupled_epochs
        self.latent_channels = latent_channels
        self.filters = filters
        self.kernel_size = kernel_size
        self.dynamics = dynamics
        self.dynamics_filters = dynamics_filters
        self.dropout = dropout
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

    # The fitted backbone is shared by clones, like sklearn.frozen.FrozenEstimator.
    _shared_params = ("backbone", "distribute")

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the meso dynamics on ``X`` (meso tokens, or plain scaled meso fields).

        Parameters
        ----------
        X : xarray.DataArray or xarray.Dataset
            PatchTokenizer output with the backbone's token shape and scaling
            ranges; or plain fields whose grid is a whole number of tokens.
        y : None
            Ignored.

        Returns
        -------
        self
        """
        # A mapping iterates as its keys: {"vae": 1} would silently read as ("vae",).
        frozen = () if isinstance(self.freeze, Mapping) else tuple(self.freeze)
        if isinstance(self.freeze, Mapping) or not all(isinstance(p, str) and p in FREEZABLE for p in frozen):
            raise ValueError(f"freeze must name parts among {FREEZABLE}, got {self.freeze!r}.")
        return self._fit(X)

    # -- architecture -------------------------------------------------------------
    def _arch(self, name):
        value = getattr(self, name)
        if self.backbone is not None:
            return getattr(self.backbone, name) if value is None else value
        return _ARCH[name] if value is None else value

    def _latent_channels(self) -> int:
        return self._arch("latent_channels")

    def _dynamics_kind(self) -> str:
        return self._arch("dynamics")

    @property
    def _time_ratio(self) -> int:
        # Estimators fitted before time_ratio_ existed had an int time_ratio.
        return self.__dict__.get("time_ratio_", self.time_ratio)

    def _fitted_token_shape(self, layout):
        return tuple(self.backbone.token_shape_) if self.backbone is not None else tuple(layout.token_shape)

    def _check_compatible(self, layout):
        bb = self.backbone
        if bb is None:
            self.time_ratio_ = _DEFAULT_RATIO if self.time_ratio == "auto" else int(self.time_ratio)
            return
        check_is_fitted(bb, msg="backbone must be a fitted MicroDynamicsEstimator; fit it on micro data first.")
        for name in _ARCH:
            ours = getattr(self, name)
            if ours is not None and ours != getattr(bb, name):
                raise ValueError(
                    f"{name}={ours!r} but the backbone has {name}={getattr(bb, name)!r}; leave {name}=None "
                    "to take the backbone's."
                )
        problems = self._scale_differences(layout, bb)
        self.time_ratio_, problem = self._resolve_time_ratio(bb)
        if problem:
            problems.append(problem)
        if problems:
            raise ValueError("The meso data do not match the backbone's micro data:\n- " + "\n- ".join(problems))
        self._check_token_shape(layout, bb.token_shape_, "The meso data", "the backbone")

    def _scale_differences(self, layout, bb) -> list[str]:
        """Fields, scaling ranges, field units and grid spacing that differ from the backbone's, one line each."""
        out = []
        if layout.fields != bb.fields_:
            out.append(f"the meso data has fields {layout.fields} but the backbone was fitted on {bb.fields_}; pass "
                       "the same fields in the same order.")
        ours = None if layout.ranges is None else dict(zip(layout.fields, map(list, layout.ranges)))
        theirs = None if bb.ranges_ is None else {f: list(r) for f, r in bb.ranges_.items()}
        if ours is not None and theirs is not None:  # the fields scaled differently
            differ = [f for f in ours if f in theirs and not np.allclose(ours[f], theirs[f], rtol=1e-6)]
            ours, theirs = ({f: r[f] for f in differ} if differ else None for r in (ours, theirs))
        if ours != theirs:
            out.append(f"the meso data was scaled with ranges {ours} but the backbone with {theirs}; scale both "
                       "alike, e.g. PatchTokenizer(ranges=micro_pipeline['tokens'].ranges_) for the meso tokens.")
        units = getattr(bb, "units_", {})
        out += [f"field {f!r} is in {u!r} in the meso data but in {units[f]!r} in the backbone's."
                for f, u in self.units_.items() if units.get(f, u) != u]
        for dim, a, b in zip(("y", "x"), self.spacing_, getattr(bb, "spacing_", (None, None))):
            if a is not None and b is not None and not math.isclose(a, b, rel_tol=1e-6):
                out.append(f"the grid spacing along {dim!r} is {a:g} in the meso data but {b:g} in the backbone's; "
                           "resample the meso data to the micro spacing.")
        return out

    def _resolve_time_ratio(self, bb) -> tuple[int, str | None]:
        """``time_ratio`` resolved against the backbone's time step, and what is wrong with it (or None)."""
        ours, theirs = self.time_step_, getattr(bb, "time_step_", None)
        if ours is None or theirs is None:
            if self.time_ratio != "auto":
                return int(self.time_ratio), None
            which = "the meso data have" if ours is None else "the backbone has"
            warnings.warn(f"time_ratio='auto' cannot compare time steps: {which} no numeric time coordinate "
                          f"with a known step; using time_ratio={_DEFAULT_RATIO}. Pass time_ratio explicitly to "
                          "silence this warning.", UserWarning, stacklevel=user_stacklevel())
            return _DEFAULT_RATIO, None
        ratio = ours / theirs
        if self.time_ratio == "auto":
            n = round(ratio)
            if 1 <= n <= _MAX_RATIO and math.isclose(ratio, n, rel_tol=1e-6):
                return n, None
            return _DEFAULT_RATIO, (
                f"the time step is {ours:g} in the meso data but {theirs:g} in the backbone's, a ratio of {ratio:g}; "
                f"time_ratio='auto' needs a whole number of micro steps per meso step (1 to {_MAX_RATIO}). "
                "Resample the meso data in time.")
        declared = int(self.time_ratio)
        if math.isclose(ours, declared * theirs, rel_tol=1e-6):
            return declared, None
        return declared, (
            f"the time step is {ours:g} in the meso data but {theirs:g} in the backbone's, and time_ratio={declared} "
            f"needs {declared * theirs:g}; pass time_ratio='auto' to derive it from the time coordinates.")

    def _make_networks(self, fields, ranges, token_shape, stats=None):
        if self.backbone is None:
            return build_networks(fields, dtype=self._dtype(), stats=stats, **{k: self._arch(k) for k in _ARCH})
        bb = self.backbone._networks
        models = dict(bb.models)
        # Trained parts are copies: the backbone stays bit-identical.
        for name in self._owned_names():
            src = bb.models[name]
            copy = keras.models.clone_model(src)
            copy.set_weights(src.get_weights())
            models[name] = copy
        return _engine.Networks(models, list(bb.fields), bb.latent_channels)

    def _fresh_fields(self) -> list:
        return list(self.fields_) if self.backbone is None else []

    def _owned_names(self) -> list:
        fields = self.backbone.fields_
        names = list(_engine.COUPLED)
        if "vae" not in self.freeze:
            names += _engine.network_names(_engine.VAE, fields)
        if "decoupled" not in self.freeze:
            names += _engine.network_names(_engine.DECOUPLED, fields)
        return names

    def _stages(self):
        horizons = self._check_horizons()
        fields = self.fields_
        vae = _engine.network_names(_engine.VAE, fields)
        decoupled = _engine.network_names(_engine.DECOUPLED, fields)
        meso_epochs = _per_horizon(self.epochs, horizons, "epochs")
        if self.backbone is None:
            return [
                Stage("vae", vae, (self.vae_epochs,)),
                Stage("decoupled", decoupled, _per_horizon(self.decoupled_epochs, horizons, "decoupled_epochs"),
                      horizons, coupled=False, train_decoupled=True),
                Stage("meso", list(_engine.COUPLED), meso_epochs, horizons, train_coupled=True),
            ]
        stages = [] if "vae" in self.freeze else [Stage("vae", vae, (self.vae_epochs,))]
        train_decoupled = "decoupled" not in self.freeze
        trainable = list(_engine.COUPLED) + (decoupled if train_decoupled else [])
        return stages + [Stage("meso", trainable, meso_epochs, horizons, train_decoupled=train_decoupled,
                               train_coupled=True)]

    # -- fitted state: the backbone is stored as itself; keep only the parts we own --
    _estimator_slots = {"backbone": Slot(("MicroDynamicsEstimator",))}
    _optional_fitted_attrs = {**LatentDynamicsEstimator._optional_fitted_attrs,
                              "time_ratio_": ("a positive int", lambda v: is_int(v) and v >= 1)}

    def _network_names(self) -> list:
        return super()._network_names() if self.backbone is None else self._owned_names()

    def _restore_networks(self, models, fields, latent_channels):
        if self.backbone is not None:
            models = {**self.backbone._networks.models, **models}
        return _engine.Networks(models, fields, latent_channels)
