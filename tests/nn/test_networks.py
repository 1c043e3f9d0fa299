"""Networks and loss terms: shapes, closed forms, safe-mode serialisation."""

import keras
import numpy as np
import pytest

from skmld.nn import LatentStepper, build_decoder, build_dynamics, build_encoder
from skmld.nn.losses import edge_boosting_mae, edge_weight, kl_divergence, normalized_mse, reconstruction_sse


@pytest.mark.parametrize("shape", [(32, 32), (64, 96)])
def test_vae_shapes_any_grid(shape):
    enc, dec = build_encoder(2, 3), build_decoder(2, 3)
    x = np.random.default_rng(0).random((2, *shape, 1), dtype=np.float32)
    z_mean, z_log_var = enc(x)
    assert z_mean.shape == (2, shape[0] // 8, shape[1] // 8, 3) == z_log_var.shape
    assert dec(z_mean).shape == (2, *shape, 1)


@pytest.mark.parametrize("kind", ["unet", "resnet"])
def test_dynamics_shapes(kind):
    net = build_dynamics(kind, 6, 4, filters=2)
    z = np.random.default_rng(0).standard_normal((3, 8, 12, 6)).astype(np.float32)
    assert net(z).shape == (3, 8, 12, 4)


def test_unknown_dynamics_names_options():
    with pytest.raises(ValueError, match="'unet'.*'resnet'|resnet.*unet"):
        build_dynamics("transformer", 4, 4)


def test_stepper_is_residual_and_per_field():
    """Zeroed maps leave the state unchanged; a field's decoupled map sees only its channels."""
    c, fields = 2, 3
    mean = [build_dynamics("unet", c, c, 2) for _ in range(fields)]
    log_var = [build_dynamics("unet", 2 * c, c, 2) for _ in range(fields)]
    for m in mean + log_var:
        m.set_weights([np.zeros_like(w) for w in m.get_weights()])
    stepper = LatentStepper(mean, log_var, None, None, c)
    z = np.random.default_rng(1).standard_normal((2, 4, 4, fields * c)).astype(np.float32)
    zm, zv = stepper(z, z)
    np.testing.assert_array_equal(np.asarray(zm), z)
    # Give field 1's mean map a non-zero output bias: only its channels change.
    w = mean[1].get_weights()
    w[-1] = np.ones_like(w[-1])
    mean[1].set_weights(w)
    zm, _ = stepper(z, z)
    diff = np.abs(np.asarray(zm) - z).max(axis=(0, 1, 2))
    np.testing.assert_allclose(diff, [0, 0, 1, 1, 0, 0], atol=1e-6)


def test_loss_closed_forms():
    rng = np.random.default_rng(0)
    x = rng.random((2, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(reconstruction_sse(x, x + 0.5), [16.0, 16.0], rtol=1e-6)
    zeros = np.zeros((2, 4, 4, 3), np.float32)
    np.testing.assert_allclose(kl_divergence(zeros, zeros), [0.0, 0.0], atol=1e-7)
    # KL of N(1, 1) against N(0, 1) is 1/2 per element.
    np.testing.assert_allclose(kl_divergence(zeros + 1, zeros), [24.0, 24.0], rtol=1e-6)
    np.testing.assert_allclose(edge_weight(np.ones_like(x)), 0.0)
    w = np.asarray(edge_weight(x))
    assert w.min() == 0.0 and np.isclose(w.max(axis=(1, 2, 3)), 1.0, atol=1e-4).all()
    assert float(np.max(edge_boosting_mae(x, x))) == 0.0
    z = rng.standard_normal((2, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(normalized_mse(z, z), 0.0)
    # Scale-invariant: scaling target and prediction alike leaves the loss unchanged.
    np.testing.assert_allclose(normalized_mse(10 * z, 10 * (z + 0.1)), normalized_mse(z, z + 0.1), rtol=1e-4)


def test_networks_reload_in_safe_mode(tmp_path):
    enc = build_encoder(2, 2)
    path = tmp_path / "enc.keras"
    enc.save(path)
    again = keras.saving.load_model(path, safe_mode=True, compile=False)
    x = np.random.default_rng(0).random((1, 16, 16, 1), dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(again(x)[0]), np.asarray(enc(x)[0]))
