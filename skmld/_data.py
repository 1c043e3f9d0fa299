"""Training data as ``tf.data`` pipelines, streamed from arrays in memory or lazy dask arrays.

Every training stage sees *windows*: for each selected sample and start time,
a slice of a few consecutive time steps of one or more arrays ``(N, T, ...)``
(fields, cached latent means and log-variances). Windows are gathered block by
block along the sample axis — a numpy array is one block, a dask array one
block per chunk — so a data set larger than memory is read one chunk at a time
and never loaded whole.

Each element also carries where it sits in its global batch (``pos``), the
batch's size (``count``) and a per-batch random key (``key``). The training
steps draw their latent noise from ``key`` for the whole global batch and pick
rows by ``pos``, and divide loss sums by ``count``: the same numbers come out
whether a batch runs on one device or is split across replicas.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from skmld.fields import is_lazy  # noqa: F401 (the estimators' name for it)

GROUP_BYTES = 32 * 2**20  # dask blocks read together and shuffled across (bounds memory, mixes samples)


def blocks(a) -> list[tuple[int, int]]:
    """``(start, stop)`` sample ranges read at once: dask chunks, or the whole numpy array."""
    if not is_lazy(a):
        return [(0, a.shape[0])]
    edges = np.cumsum((0,) + tuple(a.chunks[0]))
    return [(int(s), int(e)) for s, e in zip(edges[:-1], edges[1:])]


def load(a, start: int, stop: int) -> np.ndarray:
    """Samples ``start:stop`` of ``a`` as a numpy array (a view for numpy input)."""
    part = a[start:stop]
    # One block is a few small tasks: computing them in this thread spares dask's pool
    # (and the per-thread malloc arenas that keep freed memory).
    return np.asarray(part.compute(scheduler="synchronous") if is_lazy(part) else part)


@dataclass(frozen=True)
class Window:
    """Time steps ``start + offset .. start + offset + length`` of one array; ``length=None``: one frame."""

    offset: int = 0
    length: int | None = None


def window_dataset(
    sources: dict,
    windows: dict,
    samples: np.ndarray,
    span: int,
    batch_size: int,
    *,
    rng: np.random.Generator | None = None,
    seed: int = 0,
    replicas: tuple[int, int, int] = (0, 1, 1),
) -> tf.data.Dataset:
    """Batched windows of ``span`` time steps of ``sources`` for every selected sample and start.

    Parameters
    ----------
    sources : dict of str to array
        Arrays ``(N, T, ...)`` (numpy or dask) with the same sample axis and chunks.
    windows : dict of str to Window
        Which steps of each source an element holds.
    samples : ndarray of int
        The samples to draw windows from (e.g. the training samples).
    span : int
        Time steps a window covers; starts are ``0 .. T - span``.
    batch_size : int
        Global batch size.
    rng : numpy Generator, optional
        Shuffles the blocks, then the windows within each group of blocks read
        together (:data:`GROUP_BYTES`); ``None`` keeps the order.
    seed : int
        First half of every batch's random ``key``; the second is the batch number.
    replicas : (first, local, total)
        Yield, for every global batch, the parts of replicas ``first ..
        first + local - 1`` of ``total`` (contiguous, sizes differing by at most
        one, possibly empty), in order: the per-replica batches a
        ``tf.distribute`` input pipeline hands to its local replicas in turn.
    """
    first = next(iter(sources.values()))
    n_times = first.shape[1]
    starts = n_times - span + 1
    samples = np.sort(np.asarray(samples, dtype=np.int64))
    row_bytes = sum(int(np.prod(a.shape[1:])) * a.dtype.itemsize for a in sources.values())
    # Blocks in random order, gathered into groups of about GROUP_BYTES; windows are
    # shuffled across a whole group (a numpy array is one group: a full shuffle).
    plan, group, size = [], [], 0
    block_list = blocks(first)
    for b in rng.permutation(len(block_list)) if rng is not None else range(len(block_list)):
        lo, hi = block_list[b]
        if group and size + (hi - lo) * row_bytes > GROUP_BYTES:
            plan.append(group)
            group, size = [], 0
        group.append((lo, hi))
        size += (hi - lo) * row_bytes
    plan.append(group)
    work = []  # (blocks of the group, (row within the group's blocks, start) pairs)
    for group in plan:
        offsets = np.cumsum([0] + [hi - lo for lo, hi in group])
        rows = np.concatenate([samples[(samples >= lo) & (samples < hi)] - lo + off
                               for (lo, hi), off in zip(group, offsets)])
        if rows.size == 0:
            continue
        pairs = np.stack([np.repeat(rows, starts), np.tile(np.arange(starts), rows.size)], axis=1)
        work.append((group, pairs[rng.permutation(len(pairs))] if rng is not None else pairs))

    def element_shape(a, w: Window):
        return a.shape[2:] if w.length is None else (w.length,) + a.shape[2:]

    signature = {
        name: tf.TensorSpec((None, *element_shape(a, windows[name])), tf.as_dtype(a.dtype))
        for name, a in sources.items()
    }
    signature.update(pos=tf.TensorSpec((None,), tf.int32), count=tf.TensorSpec((None,), tf.int32),
                     key=tf.TensorSpec((None, 2), tf.int32))

    def read(a, group):
        parts = [load(a, lo, hi) for lo, hi in group]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    first_replica, local, n_replicas = replicas

    def gather(block, pairs):
        n, t = pairs.T
        return {
            name: block[name][n, t + w.offset] if w.length is None
            else block[name][n[:, None], t[:, None] + w.offset + np.arange(w.length)]
            for name, w in windows.items()
        }

    def global_batches():
        """The windows of each global batch; a batch may straddle two groups."""
        parts, size = [], 0
        for group, pairs in work:
            block = {name: read(a, group) for name, a in sources.items()}
            start = 0
            while start < len(pairs):
                take = pairs[start : start + batch_size - size]
                start += len(take)
                parts.append(gather(block, take))
                size += len(take)
                if size == batch_size:
                    yield {k: np.concatenate([p[k] for p in parts]) for k in windows}
                    parts, size = [], 0
        if parts:
            yield {k: np.concatenate([p[k] for p in parts]) for k in windows}

    def generate():
        for number, batch in enumerate(global_batches()):
            size = len(next(iter(batch.values())))
            edges = np.cumsum([0] + [size // n_replicas + (r < size % n_replicas) for r in range(n_replicas)])
            for r in range(first_replica, first_replica + local):
                lo, hi = edges[r], edges[r + 1]
                yield {
                    **{k: v[lo:hi] for k, v in batch.items()},
                    "pos": np.arange(lo, hi, dtype=np.int32),
                    "count": np.full(hi - lo, size, np.int32),
                    "key": np.tile(np.array([seed, number], np.int32), (hi - lo, 1)),
                }

    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF  # split above
    # A fixed, small buffer: AUTOTUNE grows it with the length of an epoch (memory ∝ data).
    return dataset.with_options(options).prefetch(2)


class LatentCache:
    """Where encoded latents live during a stage: memory, a temporary Zarr store, or one at a path.

    Parameters
    ----------
    cache : {"auto", "memory", "disk"} or path
        ``"auto"`` is ``"disk"`` for dask input, ``"memory"`` otherwise.
    lazy_input : bool
        Whether the fields are a dask array.
    """

    def __init__(self, cache, lazy_input: bool):
        if cache == "auto":
            cache = "disk" if lazy_input else "memory"
        self.in_memory = cache == "memory"
        self._tmp = None
        if self.in_memory:
            self.root = None
        elif cache == "disk":
            self.root = self._tmp = tempfile.mkdtemp(prefix="skmld-latents-")
        else:
            self.root = os.fspath(cache)
            os.makedirs(self.root, exist_ok=True)

    def encode(self, encode_block, x, name: str):
        """Latents of ``x`` block by block: ``encode_block(np block) -> (z_mean, z_log_var)``.

        Returns numpy arrays, or dask arrays over Zarr stores chunked like ``x``.
        """
        parts = blocks(x)
        if self.in_memory:
            outs = [encode_block(load(x, lo, hi)) for lo, hi in parts]
            return outs[0] if len(outs) == 1 else tuple(np.concatenate(o) for o in zip(*outs))
        import dask.array as da
        import zarr

        stores = None
        for lo, hi in parts:
            zm, zv = encode_block(load(x, lo, hi))
            if stores is None:
                stores = [
                    zarr.open_array(os.path.join(self.root, f"{name}_{kind}.zarr"), mode="w",
                                    shape=(x.shape[0],) + z.shape[1:], chunks=(max(hi - lo, 1),) + z.shape[1:],
                                    dtype=z.dtype)
                    for kind, z in (("z_mean", zm), ("z_log_var", zv))
                ]
            stores[0][lo:hi], stores[1][lo:hi] = zm, zv
        chunks = (tuple(hi - lo for lo, hi in parts),)
        return tuple(da.from_zarr(s, chunks=chunks + s.shape[1:]) for s in stores)

    def close(self) -> None:
        """Remove a temporary store (a store at a user's path is kept)."""
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
