"""Page hashing in C (xpipe.hashing): equal to the xxhash package's xxh3-64, page by page."""

import numpy as np
import pytest
import xxhash

from xpipe import hashing
from xpipe.hashing import PAGE_SIZE, ZERO_HASH, hash_file, hash_pages


def random_pages(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=n * PAGE_SIZE, dtype=np.uint8).tobytes()


def xxh(data):
    return [xxhash.xxh3_64_intdigest(data[i:i + PAGE_SIZE]) for i in range(0, len(data), PAGE_SIZE)]


def test_hash_pages_matches_xxhash():
    data = bytes(PAGE_SIZE) + random_pages(5)
    got = hash_pages(data)
    assert got.dtype == np.uint64
    assert got.tolist() == xxh(data)
    assert got[0] == ZERO_HASH == xxhash.xxh3_64_intdigest(bytes(PAGE_SIZE))
    assert hash_pages(memoryview(data)[PAGE_SIZE:]).tolist() == xxh(data)[1:]  # any bytes-like
    assert hash_pages(b"").tolist() == []
    with pytest.raises(ValueError, match="not a whole number"):
        hash_pages(b"x" * 100)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_hash_file_ranges_in_order_on_every_thread_count(tmp_path, monkeypatch, threads):
    monkeypatch.setattr(hashing, "CHUNK_PAGES", 2)  # many pieces, shared by the threads
    data = b"hdr" + random_pages(11)  # pages at offsets 3 + k * 4096: not page-aligned
    (tmp_path / "f").write_bytes(data)
    ranges = [(3 + 6 * PAGE_SIZE, 5), (3, 6), (3 + 2 * PAGE_SIZE, 0)]
    got = hash_file(tmp_path / "f", ranges, threads=threads)
    pages = xxh(data[3:])
    assert got.tolist() == pages[6:] + pages[:6]


@pytest.mark.parametrize("threads", [1, 2])
def test_hash_file_refuses_a_range_past_the_end(tmp_path, monkeypatch, threads):
    monkeypatch.setattr(hashing, "CHUNK_PAGES", 1)
    (tmp_path / "f").write_bytes(random_pages(3))
    with pytest.raises(ValueError, match=r"1 pages at offset 12288 run past the end of the file \(12288 bytes\)"):
        hash_file(tmp_path / "f", [(0, 2), (PAGE_SIZE, 3)], threads=threads)


def test_hash_file_of_nothing(tmp_path):
    (tmp_path / "f").write_bytes(b"")
    assert hash_file(tmp_path / "f", []).tolist() == []


def test_pieces_are_shared_through_the_counter(tmp_path):
    from xpipe import _pagehash

    data = random_pages(4)
    (tmp_path / "f").write_bytes(data)
    pieces = np.array([[0, 2, 0], [2 * PAGE_SIZE, 2, 2]], dtype=np.int64)
    out = np.zeros(4, dtype=np.uint64)
    counter = np.array([1], dtype=np.int64)  # piece 0 already taken by another caller
    with open(tmp_path / "f", "rb") as f:
        _pagehash.hash_pieces(f.fileno(), pieces, counter, out)
        assert out.tolist() == [0, 0] + xxh(data)[2:]
        assert counter[0] >= 2
        counter[0] = 2  # set past the last piece: a caller stops at once
        out[:] = 0
        _pagehash.hash_pieces(f.fileno(), pieces, counter, out)
        assert out.tolist() == [0, 0, 0, 0]
        with pytest.raises(ValueError, match=r"piece 1 \(offset 8192, 2 pages, at 3\) is outside the output"):
            _pagehash.hash_pieces(f.fileno(), np.array([[0, 1, 0], [8192, 2, 3]], dtype=np.int64),
                                  np.zeros(1, dtype=np.int64), out)
        for huge in ([1, 2**61, 0], [0, 1, 2**61]):  # sizes whose byte counts would overflow
            with pytest.raises(ValueError, match="outside the output|past the end"):
                _pagehash.hash_pieces(f.fileno(), np.array([huge], dtype=np.int64),
                                      np.zeros(1, dtype=np.int64), np.zeros(2**20, dtype=np.uint64))


def test_readers_hash_with_the_threads_they_are_given(tmp_path, monkeypatch):
    from xpipe.readers.registry import SNAPSHOT_READERS

    pools = []

    class Recording(hashing.ThreadPoolExecutor):
        def __init__(self, workers, **kw):
            pools.append(workers)
            super().__init__(workers, **kw)

    monkeypatch.setattr(hashing, "ThreadPoolExecutor", Recording)
    monkeypatch.setattr(hashing, "CHUNK_PAGES", 1)
    data = random_pages(4)
    (tmp_path / "m.raw").write_bytes(data)
    for threads in (1, 3):
        gfn, h = SNAPSHOT_READERS["pmemsave"](tmp_path / "m.raw", threads)
        assert h.tolist() == xxh(data)
    assert pools == [1, 3]


def test_disk_size_does_not_hash_the_image(tmp_path, monkeypatch):
    from xpipe import bundle

    (tmp_path / "d.img").write_bytes(bytes(3 * PAGE_SIZE))
    monkeypatch.setattr(bundle, "hash_file", lambda *a: pytest.fail("the image was hashed"))
    assert bundle.image_blocks(tmp_path / "d.img") == 3


def test_a_file_cut_short_while_hashed_is_a_value_error(tmp_path):
    """SIGBUS in a hashing thread's mapped window (the file was truncated under it) ends
    that call with ValueError instead of killing the process; two threads, one cut."""
    import os
    import threading
    import time

    path = tmp_path / "sparse.raw"
    with open(path, "wb") as f:
        f.truncate(64 << 30)  # sparse: hashing it takes seconds, the cut comes after one
    cutter = threading.Timer(1.0, os.truncate, (path, 1 << 20))
    cutter.start()
    started = time.perf_counter()
    with pytest.raises(ValueError, match="the file ended before the pages to hash: it shrank while it was read"):
        hashing.hash_file(path, [(0, (64 << 30) // 4096)], threads=2)
    cutter.join()
    assert time.perf_counter() - started >= 1.0  # it was cut while hashing, not before
