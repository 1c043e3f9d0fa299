"""Safe, pickle-free model files: :func:`save` and :func:`load`.

An skmld model file is one zip archive::

    manifest.json                        format, format_version, versions and the tree of objects
    root/estimator.json                  the root object's params, fitted attributes and networks
    root/models/<network>.json           per network it owns: the Keras config ...
    root/models/<network>.npz            ... and the weights (arr_0.npy, arr_1.npy, ... in get_weights order)
    root/backbone/estimator.json         a meso estimator's backbone, nested the same way, ...
    root/steps/<i>/estimator.json        ... the steps of a Pipeline, or a CalibratedDynamics's
    root/estimator/estimator.json            estimator and, unless it is that same object,
    root/estimator_/estimator.json           its fitted estimator_

Each object stores the state its class declares once, for pickle and for this
format alike (:class:`skmld._state.FittedState`): its parameters, its fitted
attributes and, for the dynamics estimators, the networks it owns (the form a
pickle holds: Keras config and weights). Its manifest entry names its class
and holds its nested estimators; an object met again (``estimator_`` that is
``estimator`` with ``cv="prefit"``, a shared backbone) is
``{"same_as": "<path of the first>"}``, and loading restores the identity. The
``estimator`` of a cross-validated CalibratedDynamics may be unfitted: its
entry has ``"fitted": false`` and it holds parameters only.

Only the classes of :data:`CLASSES` are rebuilt. Values JSON cannot tell
apart (tuples, ordered dicts, numpy arrays and scalars, xarray variables,
``RandomState`` states) are one-key tagged objects (``{"__tuple__": [...]}``).
A network is rebuilt with ``keras.saving.deserialize_keras_object(...,
safe_mode=True)`` after a check that its config names only Keras's classes and
skmld's registered ones and no ``Lambda`` layer; weights are read with
``allow_pickle=False``. Nothing is unpickled, so loading an untrusted file runs
no code from it; a truncated, corrupted or tampered file raises ``ValueError``
naming the member and what was expected.

Files are deterministic: the same fitted model gives the same bytes (members
sorted, fixed timestamps and permissions, JSON with sorted keys).
"""

from __future__ import annotations

import io
import os
import zipfile

from sklearn.base import BaseEstimator

from skmld.persistence import _objects
from skmld.persistence._archive import Reader, json_bytes, zip_bytes
from skmld.persistence._objects import CLASSES, MANIFEST
from skmld.persistence._values import short

__all__ = ["FORMAT_VERSION", "CLASSES", "save", "load"]

#: Version of the file format this skmld writes and the newest it reads.
FORMAT_VERSION: int = 1
_ROOT = "root/"


def save(estimator: BaseEstimator, path: str | os.PathLike | io.IOBase) -> None:
    """Write a fitted skmld estimator or Pipeline of them to one safe model file.

    Parameters
    ----------
    estimator : MicroDynamicsEstimator, MesoDynamicsEstimator, PatchTokenizer, CalibratedDynamics or Pipeline
        Fitted; a Pipeline's steps must be skmld estimators (or ``"passthrough"``).
        A meso estimator's backbone is stored with it, and a
        CalibratedDynamics's ``estimator`` (fitted or not) and ``estimator_``
        with it, once when they are the same object.
    path : str, path-like or binary file object
        Where to write. A path is written atomically (a temporary file renamed).

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator (or a Pipeline step) is not fitted.
    TypeError
        If it is not one of the classes skmld's format stores, or holds a value
        the format cannot store (such as a CalibratedDynamics's ``cv`` that is a
        splitter: set ``cv="prefit"`` or an int first).

    See Also
    --------
    load : Read the file back.

    Notes
    -----
    The same fitted model always gives the same bytes. A ``distribute``
    strategy is not stored: the loaded estimator has ``distribute=None``.

    Examples
    --------
    >>> import tempfile, os, numpy as np, xarray as xr
    >>> import skmld
    >>> from skmld import PatchTokenizer
    >>> from skmld.persistence import save
    >>> X = xr.Dataset({"temperature": (("sample", "time", "y", "x"), np.ones((1, 2, 32, 32)))})
    >>> path = os.path.join(tempfile.mkdtemp(), "tok.skmld")
    >>> save(PatchTokenizer().fit(X), path)
    >>> skmld.load(path).token_shape_
    (32, 32)
    """
    import skmld

    members: dict[str, bytes] = {}
    root = _objects.write(estimator, _ROOT, members, type(estimator).__name__, {})
    versions = {"skmld": skmld.__version__}
    if any(name.endswith(".npz") for name in members):
        import keras

        versions["keras"] = keras.__version__
    members[MANIFEST] = json_bytes({"format": "skmld", "format_version": FORMAT_VERSION, "object": root,
                                    "versions": versions})
    data = zip_bytes(members)
    if hasattr(path, "write"):
        path.write(data)
        return
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load(path: str | os.PathLike | io.IOBase) -> BaseEstimator:
    """Read an estimator or Pipeline written by :func:`save` (or ``est.save``).

    Nothing is unpickled and no code from the file runs: only skmld's
    estimator classes and sklearn's Pipeline are built, and networks load with
    Keras's safe mode after a check of their configuration.

    Parameters
    ----------
    path : str, path-like or binary file object
        The model file.

    Returns
    -------
    estimator : MicroDynamicsEstimator, MesoDynamicsEstimator, PatchTokenizer, CalibratedDynamics or Pipeline
        Fitted, predicting exactly as the saved one.

    Raises
    ------
    ValueError
        If the file is not a valid skmld model file (not a zip, truncated,
        corrupted, a member missing or of the wrong type, an unknown class, a
        network with a Lambda layer or an unregistered custom object), or was
        written by a newer skmld (its ``format_version`` is newer than
        :data:`FORMAT_VERSION`).

    See Also
    --------
    save : Write a model file.

    Examples
    --------
    >>> import tempfile, os, numpy as np, xarray as xr
    >>> import skmld
    >>> from skmld.persistence import save
    >>> X = xr.Dataset({"temperature": (("sample", "time", "y", "x"), np.ones((1, 2, 32, 32)))})
    >>> path = os.path.join(tempfile.mkdtemp(), "tok.skmld")
    >>> save(skmld.PatchTokenizer().fit(X), path)
    >>> skmld.load(path).fields_
    ['temperature']
    """
    source = repr(getattr(path, "name", None) or "<file object>") if hasattr(path, "read") else repr(os.fspath(path))
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as e:  # ValueError: a corrupt offset
        raise ValueError(f"{source} is not an skmld model file: not a readable zip archive ({e}); the file may be "
                         "truncated or corrupted.") from None
    with zf:
        reader = Reader(zf, source)
        if MANIFEST not in reader.names:
            # A truncated file can still parse as a zip: one of the networks' weights archives.
            raise ValueError(f"{source} is not an skmld model file, or it is truncated: member {MANIFEST!r} is "
                             "missing.")
        manifest = reader.json(MANIFEST, "the manifest")
        if manifest.get("format") != "skmld":
            raise reader.invalid(MANIFEST, f"key 'format' must be 'skmld', got {short(manifest.get('format'))}.")
        version = reader.key(manifest, "format_version", int, MANIFEST, "an int")
        if version > FORMAT_VERSION:
            import skmld

            raise ValueError(f"{source} has format_version {version}, but this skmld ({skmld.__version__}) reads "
                             f"format_version {FORMAT_VERSION} and older; upgrade skmld to load it.")
        if version < 1:
            raise reader.invalid(MANIFEST, f"format_version must be >= 1, got {version}.")
        return _objects.read(manifest.get("object"), _ROOT, reader, {})
