"""skmld._data: blocks of samples, windows of time steps, and the latent cache."""

import dask.array as dsa
import numpy as np

from skmld import _data


def take(dataset):
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset]


def test_blocks_follow_dask_chunks_and_load():
    a = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
    assert _data.blocks(a) == [(0, 10)]
    lazy = dsa.from_array(a, chunks=(4, 2))
    assert _data.blocks(lazy) == [(0, 4), (4, 8), (8, 10)]
    np.testing.assert_array_equal(_data.load(lazy, 3, 7), a[3:7])


def test_windows_cover_every_sample_and_start_once():
    x = np.arange(4 * 5, dtype=np.float32).reshape(4, 5)  # x[n, t] = 5 n + t
    out = take(_data.window_dataset({"x": dsa.from_array(x, chunks=(2, 5))}, {"x": _data.Window(1, 2)},
                                    np.array([0, 2, 3]), span=3, batch_size=4, rng=np.random.default_rng(0)))
    windows = np.concatenate([b["x"] for b in out])
    assert windows.shape == (9, 2)  # 3 samples x 3 starts, steps start+1 .. start+2
    assert sorted(map(tuple, windows.tolist())) == sorted(
        (5 * n + s + 1, 5 * n + s + 2) for n in (0, 2, 3) for s in range(3))
    assert [len(b["x"]) for b in out] == [4, 4, 1] and out[-1]["count"].tolist() == [1]
    assert [b["key"][0, 1] for b in out] == [0, 1, 2]


def test_replicas_split_each_batch():
    x = np.arange(6, dtype=np.float32).reshape(6, 1)
    out = take(_data.window_dataset({"x": x}, {"x": _data.Window(0)}, np.arange(6), span=1, batch_size=5,
                                    replicas=(1, 1, 2)))
    assert [b["pos"].tolist() for b in out] == [[3, 4], []]  # second replica's part of batches of 5 and 1
    assert [b["count"].tolist() for b in out] == [[5, 5], []]


def test_latent_cache_on_disk_matches_memory(tmp_path):
    x = dsa.from_array(np.random.default_rng(0).random((5, 2, 3), dtype=np.float32), chunks=(2, 2, 3))

    def encode(block):
        return block * 2, block - 1

    memory = _data.LatentCache("memory", lazy_input=True).encode(encode, x, "a")
    cache = _data.LatentCache(tmp_path / "z", lazy_input=True)
    disk = cache.encode(encode, x, "a")
    for m, d in zip(memory, disk):
        np.testing.assert_array_equal(np.asarray(d), m)
    cache.close()
    assert (tmp_path / "z").exists()  # a user's path is kept
