"""skmld's own exceptions."""


class SkmldError(Exception):
    """Base class of skmld's errors."""


class DivergenceError(SkmldError, FloatingPointError):
    """A training loss became NaN or infinite.

    Attributes
    ----------
    stage, horizon, epoch, term :
        Where it happened: the training stage, curriculum horizon, 0-based epoch
        and the first non-finite loss term.
    """

    def __init__(self, stage: str, horizon: int, epoch: int, term: str, value: float):
        self.stage, self.horizon, self.epoch, self.term = stage, horizon, epoch, term
        super().__init__(
            f"Training diverged in stage {stage!r}, horizon {horizon}, epoch {epoch}: loss term "
            f"{term!r} is {value}. The weights of the last good epoch were kept; lower the "
            "learning_rate, or pass on_divergence='restore' to retry with a halved rate."
        )
