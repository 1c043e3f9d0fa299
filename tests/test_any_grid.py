"""A fitted micro model predicts the tokens of a grid larger than the one it was fitted on."""

import numpy as np

from skmld.datasets import make_pore_collapse


def test_micro_predicts_tokens_of_a_larger_grid(micro_pipe):
    """Fitted on 32 x 64 (1 x 2 tokens), the model predicts the 2 x 4 tokens of a 64 x 128 grid."""
    big = make_pore_collapse("micro", 1, shape=(64, 128), n_steps=3, random_state=5)
    pred = micro_pipe.predict(big)
    assert (pred.sizes["token_y"], pred.sizes["token_x"]) == (2, 4) and np.isfinite(pred.values).all()
    back = micro_pipe["tokens"].inverse_transform(pred)
    assert back["pressure"].shape == big["pressure"].shape
    np.testing.assert_allclose(back["x"].values, big["x"].values)
