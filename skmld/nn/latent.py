"""One step of the latent dynamics: per-field decoupled maps, then the coupled map.

The latent state of all fields is stored channels-last and concatenated by field:
channels ``[f * C, (f + 1) * C)`` belong to field ``f`` (``C`` latent channels).
"""

from dataclasses import dataclass

import keras
from keras import ops


@dataclass
class LatentStepper:
    """Latent time step ``(z_mean, z_log_var) -> (z_mean', z_log_var')``.

    Every map is residual: it predicts the change of its target over one step,
    so an untrained map starts at persistence (the state stays as it is).

    Parameters
    ----------
    decoupled_mean, decoupled_log_var : list of keras.Model
        Per field: ``z̄_f -> Δz̄_f`` and ``[z̄_f, zσ_f] -> Δzσ_f``.
    coupled_mean, coupled_log_var : keras.Model or None
        On all fields: ``z̄ -> Δz̄`` and ``[z̄, zσ] -> Δzσ``; ``None`` skips the coupled step.
    latent_channels : int
        Latent channels per field, ``C``.
    """

    decoupled_mean: list
    decoupled_log_var: list
    coupled_mean: keras.Model | None
    coupled_log_var: keras.Model | None
    latent_channels: int

    def decoupled(self, z_mean, z_log_var, training: bool = False):
        """Apply each field's decoupled pair to that field's channels."""
        c = self.latent_channels
        means, log_vars = [], []
        for f, (f_mean, f_log_var) in enumerate(zip(self.decoupled_mean, self.decoupled_log_var)):
            m, lv = z_mean[..., f * c : (f + 1) * c], z_log_var[..., f * c : (f + 1) * c]
            means.append(m + f_mean(m, training=training))
            log_vars.append(lv + f_log_var(ops.concatenate([m, lv], axis=-1), training=training))
        return ops.concatenate(means, axis=-1), ops.concatenate(log_vars, axis=-1)

    def coupled(self, z_mean, z_log_var, training: bool = False):
        """Apply the coupled pair to all fields' channels; its log-var map sees the mean too."""
        mean = z_mean + self.coupled_mean(z_mean, training=training)
        log_var = z_log_var + self.coupled_log_var(ops.concatenate([z_mean, z_log_var], axis=-1), training=training)
        return mean, log_var

    def __call__(self, z_mean, z_log_var, *, train_decoupled: bool = False, train_coupled: bool = False):
        """One micro step: decoupled step, then the coupled step when there is one.

        ``train_*`` switch dropout on for the parts being trained; frozen parts run
        in inference mode.
        """
        z_mean, z_log_var = self.decoupled(z_mean, z_log_var, training=train_decoupled)
        if self.coupled_mean is None:
            return z_mean, z_log_var
        return self.coupled(z_mean, z_log_var, training=train_coupled)
