"""Rollouts keep their latents within the training latents' range (``latent_margin``)."""

import pickle

import numpy as np
import pytest


def _drifting_copy(est, drift=5.0):
    """A copy of ``est`` whose coupled mean map adds ``drift`` to every latent at every step."""
    est = pickle.loads(pickle.dumps(est))
    head = est._networks.models["coupled_mean"].layers[-1]
    kernel, bias = head.get_weights()
    head.set_weights([np.zeros_like(kernel), np.full_like(bias, drift)])
    return est


def test_latent_range_is_the_training_latents_range(micro_pipe, micro_X):
    est = micro_pipe["micro"]
    z = est.encode(micro_pipe["tokens"].transform(micro_X))["z_mean"]
    z = z.stack(channels=("field", "channel")).transpose(..., "channels").values.reshape(-1, est.latent_range_.shape[1])
    assert est.latent_range_.shape == (2, len(est.fields_) * est.latent_channels)
    np.testing.assert_allclose(est.latent_range_, [z.min(0), z.max(0)], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_rollout_latents_stay_within_the_widened_range(micro_pipe, micro_X, margin):
    est = _drifting_copy(micro_pipe["micro"])
    x0 = est._to_arrays(micro_pipe["tokens"].transform(micro_X))[0][:, 0]
    lo, hi = est.latent_range_
    pad = margin * (hi - lo)

    est.set_params(latent_margin=None)
    free = est._rollout_block(x0, 6, 0, 0)[2]
    assert (free[:, -1] > hi + pad + 1.0).any()  # the drift leaves the range without the bound

    est.set_params(latent_margin=margin)
    bounded = est._rollout_block(x0, 6, 0, 0)[2]
    assert (bounded[:, 1:] >= lo - pad - 1e-5).all() and (bounded[:, 1:] <= hi + pad + 1e-5).all()
    assert np.isclose(bounded[:, -1], hi + pad, atol=1e-4).any()  # it is the bound that holds them
    members = est._rollout_block(x0, 6, 4, 0, keep_draws=True)[2]
    assert np.isfinite(members).all()


def test_old_pickles_without_a_range_roll_out_unbounded(micro_pipe, micro_X):
    est = _drifting_copy(micro_pipe["micro"])
    del est.__dict__["latent_range_"]
    assert est._latent_limits() == (None, None)
    assert est.predict(micro_pipe["tokens"].transform(micro_X)).notnull().all()
