"""Trainer: its steps called or overridden alone."""

import math
import warnings

import numpy as np
import pytest
import tensorflow as tf

from skmld import MicroDynamicsEstimator, PatchTokenizer
from skmld._trainer import Trainer
from skmld.exceptions import DivergenceError

TINY = {"filters": 2, "dynamics_filters": 2, "horizons": (1,), "vae_epochs": 1, "decoupled_epochs": 0,
        "coupled_epochs": 0, "batch_size": 8, "random_state": 0}


@pytest.fixture(scope="module")
def tokens(micro_X):
    return PatchTokenizer(patch_size=32).fit_transform(micro_X)


def test_run_epoch_averages_each_term_over_the_batches():
    def step(batch):
        return {"loss": tf.constant(batch), "kl": tf.constant(2.0 * batch)}

    terms = Trainer(None).run_epoch(step, [1.0, 2.0, 6.0])
    assert terms == {"loss": 3.0, "kl": 6.0}
    assert all(type(v) is float for v in terms.values())


class DivergingOnce(Trainer):
    """The first training epoch wrecks the weights and reports a NaN loss; later epochs train."""

    def __init__(self, estimator):
        super().__init__(estimator)
        self.calls, self.optimizer_lrs, self.divergences = [], [], []

    def _weights(self):
        return [w.copy() for m in self.estimator._networks.models.values() for w in m.get_weights()]

    def run_epoch(self, step, batches):
        self.calls.append(self._weights())
        if len(self.calls) == 1:
            for model in self.estimator._networks.models.values():
                if model.name.startswith("encoder"):
                    model.set_weights([np.full_like(w, 1e6) for w in model.get_weights()])
            return {"loss": math.nan, "kl": 1.0}
        return super().run_epoch(step, batches)

    def make_optimizer(self, lr, variables):
        self.optimizer_lrs.append(lr)
        return super().make_optimizer(lr, variables)

    def on_divergence(self, stage, horizon, epoch, term, lr, variables):
        self.divergences.append((stage.name, horizon, epoch, term, lr))
        return super().on_divergence(stage, horizon, epoch, term, lr, variables)


def test_nan_epoch_restores_weights_and_retries_with_halved_rate(tokens, monkeypatch, caplog):
    trainers = []

    def make(estimator):
        trainers.append(DivergingOnce(estimator))
        return trainers[-1]

    monkeypatch.setattr(MicroDynamicsEstimator, "_trainer_class", staticmethod(make))
    est = MicroDynamicsEstimator(**TINY, learning_rate=1e-3, on_divergence="restore")
    with caplog.at_level("WARNING", logger="skmld"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a 1-epoch VAE may be named as not learnt
        est.fit(tokens)
    (trainer,) = trainers
    assert trainer.divergences == [("vae", 0, 0, "loss", 5e-4)]
    assert trainer.optimizer_lrs == [1e-3, 5e-4]
    # The retry starts from the weights before the wrecked epoch, not from the wreck.
    before, retry = trainer.calls[0], trainer.calls[1]
    assert len(before) == len(retry)
    for a, b in zip(before, retry):
        np.testing.assert_array_equal(a, b)
    assert [(r["stage"], r["epoch"]) for r in est.history_] == [("vae", 0)] and math.isfinite(est.history_[0]["loss"])
    assert any("vae h=0 epoch 0 diverged (loss); retrying with learning rate 0.0005" in r.getMessage()
               for r in caplog.records)


def test_nan_epoch_raises_with_the_weights_before_it(tokens, monkeypatch):
    trainers = []

    def make(estimator):
        trainers.append(DivergingOnce(estimator))
        return trainers[-1]

    monkeypatch.setattr(MicroDynamicsEstimator, "_trainer_class", staticmethod(make))
    est = MicroDynamicsEstimator(**TINY)
    with pytest.raises(DivergenceError, match="stage 'vae', horizon 0, epoch 0"):
        est.fit(tokens)
    after = [w for m in est._networks.models.values() for w in m.get_weights()]
    for a, b in zip(trainers[0].calls[0], after):
        np.testing.assert_array_equal(a, b)
    assert trainers[0].divergences == [] and est.history_ == []


@pytest.mark.filterwarnings("ignore:After the VAE stage")  # the shared tiny model's VAE has learnt little
@pytest.mark.parametrize("max_frames", [5, 1000])
def test_reconstruction_ratio_is_rmse_over_std_of_the_chosen_frames(micro_pipe, micro_X, max_frames):
    """Batch-by-batch sums give each field's RMSE over its std on the same frames, done by hand in one go."""
    est = micro_pipe["micro"]
    x, _ = est._to_arrays(micro_pipe["tokens"].transform(micro_X), min_times=2)
    rows = np.arange(1, x.shape[0])  # not the first row: frames index into ``rows``
    saved = est.reconstruction_rmse_ratio_
    try:
        Trainer(est).check_reconstruction(x, rows, max_frames=max_frames)
        got = est.reconstruction_rmse_ratio_
    finally:
        est.reconstruction_rmse_ratio_ = saved
    T = x.shape[1]
    frames = np.sort(np.random.default_rng(0).choice(len(rows) * T, size=min(max_frames, len(rows) * T),
                                                     replace=False))
    block = np.asarray(x)[rows[frames // T], frames % T].astype(np.float64)
    decoded = est._networks.decode(est._networks.encode(tf.constant(block, tf.float32))[0]).numpy()
    expected = np.sqrt(np.mean((decoded - block) ** 2, axis=(0, 1, 2))) / block.std(axis=(0, 1, 2))
    np.testing.assert_allclose([got[f] for f in est.fields_], expected, rtol=1e-4)
