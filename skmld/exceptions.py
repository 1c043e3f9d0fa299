"""skmld's own exceptions and warnings."""


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


class UnitsWarning(UserWarning):
    """Field values that cannot be in their declared units, e.g. a temperature in K within [0, 1].

    Issued by :func:`skmld.open_fields` and
    :func:`skmld.datasets.from_reference_arrays`; silence it with
    ``warnings.simplefilter("ignore", UnitsWarning)`` once the data are known
    to be right.
    """


def _documented_errors() -> tuple[type[BaseException], ...]:
    from sklearn.exceptions import NotFittedError

    return (ValueError, TypeError, NotFittedError, SkmldError)


#: The exception types skmld's public entry points raise on bad input.
#:
#: Every public call (:func:`skmld.as_fields`, :func:`skmld.validate_fields`,
#: :class:`~skmld.PatchTokenizer`, the estimators' ``fit``/``predict``/``score``/
#: ``encode``/``decode``, :mod:`skmld.metrics`, :func:`skmld.load`) either
#: succeeds with finite output or raises one of these, with a message that says
#: what is wrong and where (field, dim, sample, time step, file member):
#:
#: - :class:`ValueError`: wrong dims, coordinates, shapes, values (NaN/inf, empty
#:   arrays, uneven time steps), parameters out of range, damaged model files;
#:   sklearn's ``InvalidParameterError`` is a subclass;
#: - :class:`TypeError`: an argument of the wrong type (not an xarray object,
#:   a parameter of the wrong type);
#: - :class:`sklearn.exceptions.NotFittedError` (a ``ValueError`` and an
#:   ``AttributeError``): a method of an unfitted estimator;
#: - :class:`SkmldError` and its subclasses, e.g. :class:`DivergenceError`
#:   (also a ``FloatingPointError``): training diverged.
#:
#: ``tests/test_fuzz.py`` checks this property on generated malformed input.
DOCUMENTED_ERRORS: tuple[type[BaseException], ...] = _documented_errors()

