"""xpipe.readers.kdump on dumps QEMU writes: every page exact, every bad file named.

Two real dumps, both from this machine's qemu-system-x86_64 over QMP:

- ``fast``: a PC guest stopped before its firmware runs (``-S``), 64 MiB, with known
  content placed at 1 MiB by QEMU's generic loader (random pages QEMU stores raw,
  text pages it compresses, zero pages, repeats). Under a second; the error tests
  corrupt copies of it.
- ``booted`` (slow): the busybox guest the capture tests boot (xpipe.capture),
  96 MiB (Debian's kernel does not boot in 64), paused after it booted, so its
  memory holds a running Linux.

Each is taken as a pmemsave of all RAM, an ELF core and every kdump format this QEMU
has (``query-dump-guest-memory-capability``). Debian's QEMU 7.2 has only
``kdump-zlib``: it is built without LZO and snappy, and ``kdump-raw-*`` came in
QEMU 8.2; the tests for those formats skip here and run on a QEMU that has them.
What stands in meanwhile, and is named as such: the raw layout is the flattened
dump reassembled (that is what makedumpfile -R does and what kdump-raw-* writes
directly), and LZO / snappy dumps are the real pages rewritten the way QEMU's
write_dump_pages does, with the C functions QEMU calls (liblzo2's
lzo1x_1_compress, libsnappy's snappy_compress) when those libraries are
installed; the same writer first reproduces QEMU's own kdump-zlib dump byte for
byte, so it lays pages out as QEMU does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import struct
import subprocess
import tracemalloc
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import xxhash
import yaml
from guests import require_qemu
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xpipe.errors import InputError
from xpipe.hashing import PAGE_SIZE, ZERO_HASH
from xpipe.readers import kdump
from xpipe.readers.kdump import read_kdump
from xpipe.readers.memdump import read_elf_core, read_pmemsave

MIB = 64  # the fast guest; the booted one has BOOTED_MIB (Debian's kernel does not boot in 64 MiB)
BOOTED_MIB = 96
KDUMP_FORMATS = {"kdump-zlib": 1, "kdump-lzo": 2, "kdump-snappy": 4}
DESC = np.dtype([("offset", "<u8"), ("size", "<u4"), ("flags", "<u4"), ("page_flags", "<u8")])


# ---------------------------------------------------------------- the flattened format, test side
# Written from QEMU's dump/dump.c, independently of the reader.

def records(flat: bytes) -> list[tuple[int, int, int]]:
    """(dump offset, size, file offset of the data) of each record of a flattened dump."""
    assert flat[:12] == b"makedumpfile" and struct.unpack_from(">qq", flat, 16) == (1, 1)
    out, pos = [], 4096
    while True:
        off, n = struct.unpack_from(">qq", flat, pos)
        if (off, n) == (-1, -1):
            return out
        out.append((off, n, pos + 16))
        pos += 16 + n


def reassemble(flat: bytes) -> bytes:
    """The plain (kdump-raw) dump the records write: what makedumpfile -R makes."""
    recs = records(flat)
    image = bytearray(max(off + n for off, n, _ in recs))
    for off, n, at in recs:
        image[off : off + n] = flat[at : at + n]
    return bytes(image)


def file_offset(flat: bytes, dump_offset: int) -> int:
    """Where the flattened file holds byte ``dump_offset`` of the dump."""
    for off, n, at in records(flat):
        if off <= dump_offset < off + n:
            return at + dump_offset - off
    raise AssertionError(f"no record holds dump byte {dump_offset}")


def flatten(image: bytes, record: int = 16384) -> bytes:
    """A flattened dump of ``image`` in records of ``record`` bytes, all-zero ones left out as QEMU
    leaves the bitmaps' tail out."""
    out = bytearray(4096)
    out[:12] = b"makedumpfile"
    struct.pack_into(">qq", out, 16, 1, 1)
    for lo in range(0, len(image), record):
        chunk = image[lo : lo + record]
        if any(chunk) or lo + record >= len(image):
            out += struct.pack(">qq", lo, len(chunk)) + chunk
    return bytes(out + struct.pack(">qq", -1, -1))


@dataclass
class Layout:
    """Where things are in a plain kdump image (the 64-bit header QEMU writes for x86)."""

    image: bytes
    status: int = field(init=False)
    max_mapnr: int = field(init=False)
    bitmap_at: int = field(init=False)
    bitmap_len: int = field(init=False)
    desc_at: int = field(init=False)
    pfns: np.ndarray = field(init=False)
    desc: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        im = self.image
        assert im[:8] == b"KDUMP   "
        self.status, bs, sub_blocks, bitmap_blocks = struct.unpack_from("<IIII", im, 424)
        assert bs == PAGE_SIZE
        self.max_mapnr, = struct.unpack_from("<Q", im, bs + 96)
        self.bitmap_at = (1 + sub_blocks) * bs
        self.bitmap_len = bitmap_blocks // 2 * bs
        self.desc_at = self.bitmap_at + 2 * self.bitmap_len
        second = np.frombuffer(im, np.uint8, self.bitmap_len, self.bitmap_at + self.bitmap_len)
        bits = np.unpackbits(second, bitorder="little")[: self.max_mapnr]
        self.pfns = np.flatnonzero(bits)
        self.desc = np.frombuffer(im, DESC, len(self.pfns), self.desc_at)

    def desc_offset(self, i: int) -> int:
        return self.desc_at + i * DESC.itemsize


def write_kdump(pfns, pages, max_mapnr: int, flag: int, compress, template: bytes | None = None) -> bytes:
    """The plain kdump image QEMU's dump.c writes for ``pages`` (one 4096-byte bytes per pfn):
    create_header64 (``template``'s header and sub-header blocks, with its notes, when given),
    write_dump_bitmap (both bitmaps alike), write_dump_pages (zero pages share one raw page at the
    start of the data; a page is stored compressed when that makes it smaller, else raw)."""
    bs = PAGE_SIZE
    bitmap_bytes = -(-max_mapnr // 8)
    bitmap_blocks = 2 * -(-bitmap_bytes // bs)
    if template is None:
        head = bytearray(2 * bs)
        head[:8] = b"KDUMP   "
        struct.pack_into("<I", head, 8, 6)
        head[12 + 4 * 65 : 12 + 4 * 65 + 6] = b"x86_64"
        struct.pack_into("<I", head, 460, 1)  # nr_cpus
        struct.pack_into("<QI", head, bs, 0, 1)  # phys_base, dump_level
        struct.pack_into("<Q", head, bs + 48, bs + 104)  # offset_note (no notes)
    else:
        head = bytearray(template[: (1 + struct.unpack_from("<I", template, 432)[0]) * bs])
    struct.pack_into("<IIIII", head, 424, flag, bs, len(head) // bs - 1, bitmap_blocks,
                     min(max_mapnr, 2**32 - 1))
    struct.pack_into("<Q", head, bs + 96, max_mapnr)
    bits = np.zeros(bitmap_blocks // 2 * bs * 8, dtype=np.uint8)
    bits[np.asarray(pfns)] = 1
    bitmap = np.packbits(bits, bitorder="little").tobytes()
    data_at = len(head) + 2 * len(bitmap) + DESC.itemsize * len(pfns)
    data, desc = bytearray(bs), []
    for page in pages:
        if not any(page):
            desc.append((data_at, bs, 0, 0))
            continue
        c = compress(page)
        if c is not None and len(c) < bs:
            desc.append((data_at + len(data), len(c), flag, 0))
            data += c
        else:
            desc.append((data_at + len(data), bs, 0, 0))
            data += page
    return bytes(head) + bitmap + bitmap + np.array(desc, dtype=DESC).tobytes() + bytes(data)


# ---------------------------------------------------------------- the compressors QEMU calls

def _c_lzo():
    """liblzo2's lzo1x_1_compress, as QEMU calls it; None when liblzo2 is not installed."""
    name = ctypes.util.find_library("lzo2")
    if not name:
        return None
    lib = ctypes.CDLL(name)
    lib.lzo_version.restype = ctypes.c_uint
    lib.lzo1x_1_compress.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                     ctypes.POINTER(ctypes.c_size_t), ctypes.c_void_p]
    # lzo_init(): the sizes of short, int, long, lzo_uint32_t, lzo_uint, dict entry, char *, void *,
    # lzo_callback_t on x86-64
    if lib.__lzo_init_v2(lib.lzo_version(), 2, 4, 8, 4, 8, 8, 8, 8, 48) != 0:
        return None
    work = ctypes.create_string_buffer(16384 * 8)  # LZO1X_1_MEM_COMPRESS
    out = ctypes.create_string_buffer(PAGE_SIZE + PAGE_SIZE // 16 + 64 + 3)
    size = ctypes.c_size_t()

    def compress(page: bytes) -> bytes | None:
        if lib.lzo1x_1_compress(page, len(page), out, ctypes.byref(size), work) != 0:
            return None
        return out.raw[: size.value]

    return compress


def _c_snappy():
    """libsnappy's snappy_compress (its C API), as QEMU calls it; None when libsnappy is not installed."""
    name = ctypes.util.find_library("snappy")
    if not name:
        return None
    lib = ctypes.CDLL(name)
    lib.snappy_max_compressed_length.restype = ctypes.c_size_t
    lib.snappy_max_compressed_length.argtypes = [ctypes.c_size_t]
    lib.snappy_compress.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                    ctypes.POINTER(ctypes.c_size_t)]
    out = ctypes.create_string_buffer(lib.snappy_max_compressed_length(PAGE_SIZE))
    size = ctypes.c_size_t()

    def compress(page: bytes) -> bytes | None:
        size.value = len(out)
        if lib.snappy_compress(page, len(page), out, ctypes.byref(size)) != 0:
            return None
        return out.raw[: size.value]

    return compress


def compressors() -> dict[str, tuple[str, object]]:
    """format -> (who compresses, function); the C libraries QEMU links if here, else the Python ones."""
    import cramjam
    import lzallright

    lzo, snappy = _c_lzo(), _c_snappy()
    return {
        "kdump-zlib": ("zlib compress2, Z_BEST_SPEED", lambda p: zlib.compress(p, 1)),
        "kdump-lzo": ("liblzo2 lzo1x_1_compress", lzo) if lzo else
                     ("lzallright (liblzo2 not installed)", lzallright.LZOCompressor().compress),
        "kdump-snappy": ("libsnappy snappy_compress", snappy) if snappy else
                        ("cramjam (libsnappy not installed)", lambda p: bytes(cramjam.snappy.compress_raw(p))),
    }


# ---------------------------------------------------------------- real dumps from QEMU

@dataclass
class Dumps:
    folder: Path
    mib: int
    formats: list[str]  # the kdump formats this QEMU writes
    content: bytes = b""  # what the loader put at 1 MiB (fast dump only)

    @property
    def frames(self) -> int:
        return self.mib * 256

    def path(self, name: str) -> Path:
        return self.folder / name

    def kdump(self, fmt: str) -> Path:
        return self.folder / f"{fmt}.dump"


def take_dumps(qmp, folder: Path, mib: int) -> list[str]:
    """pmemsave, ELF core and every kdump format QEMU offers, of a stopped guest."""
    formats = [f for f in qmp.command("query-dump-guest-memory-capability")["formats"] if f.startswith("kdump")]
    qmp.command("pmemsave", val=0, size=mib << 20, filename=str(folder / "ram.raw"))
    qmp.command("dump-guest-memory", paging=False, protocol=f"file:{folder / 'core.elf'}")
    for fmt in formats:
        qmp.command("dump-guest-memory", paging=False, protocol=f"file:{folder / (fmt + '.dump')}", format=fmt)
    return formats


def loader_content() -> bytes:
    """256 pages: random ones (QEMU stores them raw), text (compressed), zeros and repeats."""
    rng = np.random.default_rng(7)
    pages = []
    for i in range(256):
        if i % 4 == 0:
            pages.append(rng.integers(0, 256, PAGE_SIZE, dtype=np.uint8).tobytes())
        elif i % 4 == 1:
            pages.append((f"xpipe kdump test page {i} " * 200).encode()[:PAGE_SIZE])
        elif i % 8 == 2:
            pages.append(bytes(PAGE_SIZE))
        else:
            pages.append(pages[i - 3])
    return b"".join(pages)


@pytest.fixture(scope="module")
def fast(tmp_path_factory) -> Dumps:
    require_qemu()
    folder = tmp_path_factory.mktemp("fast")
    content = loader_content()
    (folder / "content.bin").write_bytes(content)
    sock = folder / "qmp.sock"
    from xpipe.capture.qmp import QMP

    proc = subprocess.Popen(
        ["qemu-system-x86_64", "-S", "-machine", "pc", "-accel", "tcg", "-m", str(MIB), "-nodefaults",
         "-display", "none", "-qmp", f"unix:{sock},server=on,wait=off",
         "-device", f"loader,file={folder / 'content.bin'},addr=0x100000,force-raw=on"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    qmp = None
    try:
        qmp = QMP(sock)
        formats = take_dumps(qmp, folder, MIB)
        qmp.command("quit")
        proc.wait(10)
    finally:
        if qmp is not None:
            qmp.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return Dumps(folder, MIB, formats, content)


@contextmanager
def busybox_guest(workdir: Path, name: str = "kdump-1", workload: str = "idle", mib: int = BOOTED_MIB,
                  wait: bool = True):
    """The busybox guest of the capture tests (xpipe.capture), started and (``wait``) booted; stopped
    on exit. Without ``wait`` the caller waits (``guest.wait_ready``), so guests can boot side by side."""
    require_qemu()
    from xpipe.capture.guest import Guest, GuestConfig
    from xpipe.capture.images import guest_image

    image = guest_image("busybox")
    guest = Guest(GuestConfig(name, mib, image.kernel, image.initrd, image.append(workload),
                              image.root_disk, 1, workdir))
    try:
        guest.start()
        if wait:
            guest.wait_ready(90)
        yield guest
    finally:
        guest.stop()


@pytest.fixture(scope="module")
def booted(tmp_path_factory) -> Dumps:
    folder = tmp_path_factory.mktemp("booted")
    with busybox_guest(folder / "work") as guest:
        guest.pause()
        formats = take_dumps(guest.qmp, folder, BOOTED_MIB)
    return Dumps(folder, BOOTED_MIB, formats)


def qemu_format(dumps: Dumps, fmt: str) -> Path:
    if fmt not in dumps.formats:
        version = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True,
                                 check=False)
        pytest.skip(f"{version.stdout.splitlines()[0]} cannot write {fmt} (it offers {dumps.formats})")
    return dumps.kdump(fmt)


def check_against_elf_and_pmemsave(dumps: Dumps, gfn: np.ndarray, hashes: np.ndarray) -> None:
    """The kdump holds the ELF core's frames with the same content; those in RAM equal the pmemsave."""
    elf_gfn, elf_hash = read_elf_core(dumps.path("core.elf"))
    _, ram = read_pmemsave(dumps.path("ram.raw"))
    assert gfn.dtype == np.int64 and hashes.dtype == np.uint64
    assert np.array_equal(gfn, elf_gfn) and np.array_equal(hashes, elf_hash)
    in_ram = gfn < dumps.frames
    assert np.array_equal(gfn[in_ram], np.arange(dumps.frames))  # all RAM, then the firmware below 4 GiB
    assert np.array_equal(hashes[in_ram], ram)
    assert (gfn[~in_ram] >= (0xFFFC0000 >> 12)).all()
    assert (hashes == ZERO_HASH).sum() > 0


def check_one_format(dumps: Dumps, path: Path) -> None:
    gfn, hashes = read_kdump(path)
    check_against_elf_and_pmemsave(dumps, gfn, hashes)
    flat = path.read_bytes()
    layout = Layout(reassemble(flat))
    # Present frames are exactly those the bitmap sets; the rest of [0, max_mapnr) is left out.
    assert np.array_equal(gfn, layout.pfns)
    assert layout.max_mapnr == 1 << 20  # QEMU's last block ends at 4 GiB (the firmware)


# ---------------------------------------------------------------- real dumps: every page exact

@pytest.mark.slow
@pytest.mark.parametrize("fmt", KDUMP_FORMATS)
def test_booted_guest_every_page_equals_pmemsave(booted: Dumps, fmt: str) -> None:
    check_one_format(booted, qemu_format(booted, fmt))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", KDUMP_FORMATS)
def test_booted_guest_raw_layout(booted: Dumps, fmt: str, tmp_path: Path) -> None:
    """kdump-raw-* is QEMU >= 8.2: read the real one if this QEMU writes it; else (QEMU 7.2 has no
    raw form) read the flattened dump reassembled, which is that layout byte for byte."""
    raw = fmt.replace("kdump-", "kdump-raw-")
    if raw in booted.formats:
        path = booted.kdump(raw)
        assert path.read_bytes()[:8] == b"KDUMP   "
    else:
        path = tmp_path / f"{raw}.dump"
        path.write_bytes(reassemble(qemu_format(booted, fmt).read_bytes()))
    gfn, hashes = read_kdump(path)
    check_against_elf_and_pmemsave(booted, gfn, hashes)


@pytest.mark.slow
def test_booted_guest_lzo_snappy_as_qemu_writes_them(booted: Dumps, tmp_path: Path) -> None:
    check_transcoded(booted, tmp_path)


def test_qemu_kdump_holds_the_loaded_pages(fast: Dumps) -> None:
    """The fast dump: the pages QEMU's loader placed at 1 MiB, hashed independently (xxhash)."""
    path = qemu_format(fast, "kdump-zlib")
    gfn, hashes = read_kdump(path)
    check_against_elf_and_pmemsave(fast, gfn, hashes)
    c = fast.content
    want = [xxhash.xxh3_64_intdigest(c[i : i + PAGE_SIZE]) for i in range(0, len(c), PAGE_SIZE)]
    assert hashes[256 : 256 + len(want)].tolist() == want
    # QEMU stored the random pages raw, the text compressed and every zero page as one shared page.
    layout = Layout(reassemble(path.read_bytes()))
    assert set(layout.desc["flags"].tolist()) == {0, 1}
    raw = layout.desc[layout.desc["flags"] == 0]
    assert (raw["size"] == PAGE_SIZE).all()
    zero_page = layout.desc[(hashes == ZERO_HASH)]
    assert len(set(zero_page["offset"].tolist())) == 1


@pytest.mark.parametrize("fmt", KDUMP_FORMATS)
def test_qemu_kdump_every_format_it_writes(fast: Dumps, fmt: str) -> None:
    check_one_format(fast, qemu_format(fast, fmt))


def test_raw_layout_and_flattened_agree(fast: Dumps, tmp_path: Path) -> None:
    """QEMU 7.2 writes no kdump-raw-*; the flattened dump reassembled is that layout."""
    flat = qemu_format(fast, "kdump-zlib").read_bytes()
    raw = tmp_path / "raw.dump"
    raw.write_bytes(reassemble(flat))
    if shutil.which("makedumpfile"):  # the reference reassembler, when installed
        ref = tmp_path / "ref.dump"
        subprocess.run(["makedumpfile", "-R", str(ref)], input=flat, check=True, capture_output=True)
        assert ref.read_bytes() == raw.read_bytes()
    a, b = read_kdump(raw), read_kdump(fast.kdump("kdump-zlib"))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_threads_agree(fast: Dumps, monkeypatch) -> None:
    path = qemu_format(fast, "kdump-zlib")
    one = read_kdump(path, threads=1)
    monkeypatch.setattr(kdump, "CHUNK_PAGES", 5)
    many = read_kdump(path, threads=4)
    assert np.array_equal(one[1], many[1]) and np.array_equal(one[0], many[0])


def check_transcoded(dumps: Dumps, tmp_path: Path) -> None:
    """The dump's pages, as QEMU writes them in each format (see the module docstring)."""
    real = reassemble(qemu_format(dumps, "kdump-zlib").read_bytes())
    layout = Layout(real)
    elf_gfn, _ = read_elf_core(dumps.path("core.elf"))
    pages = elf_pages(dumps.path("core.elf"), elf_gfn)
    made = compressors()
    # The writer reproduces QEMU's own kdump-zlib dump exactly...
    assert write_kdump(elf_gfn, pages, layout.max_mapnr, 1, made["kdump-zlib"][1], template=real) == real
    # ...so its LZO and snappy dumps are laid out as QEMU's would be.
    for fmt, flag in KDUMP_FORMATS.items():
        image = write_kdump(elf_gfn, pages, layout.max_mapnr, flag, made[fmt][1], template=real)
        flags = set(Layout(image).desc["flags"].tolist())
        assert flag in flags and flags <= {0, flag}, (fmt, made[fmt][0], flags)
        for name, data in (("flat", flatten(image)), ("raw", image)):
            path = tmp_path / f"{fmt}-{name}.dump"
            path.write_bytes(data)
            gfn, hashes = read_kdump(path)
            check_against_elf_and_pmemsave(dumps, gfn, hashes)


def elf_pages(core: Path, gfn: np.ndarray) -> list[bytes]:
    """The bytes of each frame of an ELF core, in ``gfn`` order (independently of the kdump reader)."""
    data = core.read_bytes()
    phoff, = struct.unpack_from("<Q", data, 32)
    phnum, = struct.unpack_from("<H", data, 56)
    frames = {}
    for i in range(phnum):
        p_type, _, off, _, paddr, filesz = struct.unpack_from("<IIQQQQ", data, phoff + 56 * i)
        if p_type == 1:
            for k in range(filesz // PAGE_SIZE):
                frames[paddr // PAGE_SIZE + k] = data[off + k * PAGE_SIZE : off + (k + 1) * PAGE_SIZE]
    return [frames[g] for g in gfn.tolist()]


def test_lzo_and_snappy_as_qemu_writes_them(fast: Dumps, tmp_path: Path) -> None:
    check_transcoded(fast, tmp_path)


# ---------------------------------------------------------------- the manifest

def one_domain(tmp_path: Path, mib: int, snapshots: list[dict]):
    """The domain of a one-domain manifest in ``tmp_path``."""
    from xpipe.readers.manifest import load_manifest

    d = {"id": "a", "workload": "idle", "memory_mib": mib, "snapshots": snapshots}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"format": "xpipe-capture/1", "domains": [d]}))
    return load_manifest(tmp_path / "m.yaml").domains[0]


def test_manifest_kdump_snapshot_loads_and_normalises(fast: Dumps, tmp_path: Path, caplog) -> None:
    """Snapshots ``kdump: FILE`` and ``elf: FILE`` as QEMU writes them for a PC guest: RAM and the
    64 frames of the BIOS ROM below 4 GiB, which normalise leaves out (and says so), so they give the
    pmemsave's frames; and a kdump-zlib dump of the RAM frames alone, which has nothing to leave out."""
    from xpipe.normalise import normalise_frames

    ram = fast.path("ram.raw").read_bytes()
    pages = [ram[i : i + PAGE_SIZE] for i in range(0, len(ram), PAGE_SIZE)]
    image = write_kdump(np.arange(fast.frames), pages, fast.frames, 1, lambda p: zlib.compress(p, 1))
    (tmp_path / "ram.kdump").write_bytes(flatten(image))
    shutil.copy(qemu_format(fast, "kdump-zlib"), tmp_path / "qemu.kdump")
    shutil.copy(fast.path("core.elf"), tmp_path / "qemu.elf")
    shutil.copy(fast.path("ram.raw"), tmp_path / "s.raw")
    domain = one_domain(tmp_path, MIB, [
        {"time_s": 1, "kdump": "qemu.kdump"}, {"time_s": 2, "elf": "qemu.elf"},
        {"time_s": 3, "kdump": "ram.kdump"}, {"time_s": 4, "pmemsave": "s.raw"}])
    assert [s.kind for s in domain.snapshots] == ["kdump", "elf", "kdump", "pmemsave"]
    with caplog.at_level("INFO", logger="xpipe.normalise"):
        frames = normalise_frames(domain)
    per_snap = frames.partition_by("snapshot", as_dict=True)
    want = read_pmemsave(fast.path("ram.raw"))[1].tolist()
    for k in range(4):
        assert per_snap[(k,)]["hash"].to_list() == want, k
        assert per_snap[(k,)]["gfn"].to_list() == list(range(fast.frames)), k
    left_out = [r.getMessage() for r in caplog.records if "firmware ROM" in r.getMessage()]
    assert left_out == [f"domain a: snapshot {k}: left out the 64 frames of the PC firmware ROM "
                        f"(gfn 0xfffc0..0xfffff)" for k in (1, 2)]


def test_frames_beyond_ram_other_than_the_firmware_rom_are_refused(fast: Dumps, tmp_path: Path) -> None:
    """Only the firmware ROM's frames are left out, and only when that leaves exactly the RAM."""
    from xpipe.normalise import normalise_frames

    shutil.copy(qemu_format(fast, "kdump-zlib"), tmp_path / "qemu.kdump")
    # memory_mib too small: the ROM is not all that is extra
    with pytest.raises(InputError, match=r"qemu\.kdump: expected 8192 page frames \(32 MiB\), found 16448; "
                                         r"the 8256 frames past the first 8192 are gfn 0x2000\.\.0xfffff, "
                                         r"not only the PC firmware ROM's \(0xfffc0\.\.0xfffff\)$"):
        normalise_frames(one_domain(tmp_path, MIB // 2, [{"time_s": 1, "kdump": "qemu.kdump"}]))
    # memory_mib too large: nothing is left out
    with pytest.raises(InputError, match=r"qemu\.kdump: expected 32768 page frames \(128 MiB\), "
                                         r"found 16448$"):
        normalise_frames(one_domain(tmp_path, MIB * 2, [{"time_s": 1, "kdump": "qemu.kdump"}]))
    # RAM, the ROM and one frame more (gfn 0x800, past 1 MiB of RAM)
    zero, page = bytes(PAGE_SIZE), b"x" * PAGE_SIZE
    pfns = [*range(256), 0x800, *range(0xFFFC0, 0x100000)]
    image = write_kdump(pfns, [page] * len(pfns), 1 << 20, 1, lambda p: zlib.compress(p, 1))
    (tmp_path / "extra.kdump").write_bytes(image)  # kdump-raw: the bitmaps whole (1M pfns, to 4 GiB)
    with pytest.raises(InputError, match=r"found 321; the 65 frames past the first 256 "
                                         r"are gfn 0x800\.\.0xfffff"):
        normalise_frames(one_domain(tmp_path, 1, [{"time_s": 1, "kdump": "extra.kdump"}]))
    # without that frame: the ROM is left out
    pfns.remove(0x800)
    image = write_kdump(pfns, [zero] * 256 + [page] * 64, 1 << 20, 1, lambda p: zlib.compress(p, 1))
    (tmp_path / "ok.kdump").write_bytes(image)
    frames = normalise_frames(one_domain(tmp_path, 1, [{"time_s": 1, "kdump": "ok.kdump"}]))
    assert frames["gfn"].to_list() == list(range(256)) and (frames["hash"] == ZERO_HASH).all()


# ---------------------------------------------------------------- bad files: one InputError each

@pytest.fixture(scope="module")
def flat(fast: Dumps) -> bytes:
    return qemu_format(fast, "kdump-zlib").read_bytes()


def read_bad(tmp_path: Path, data: bytes, name: str = "bad.dump") -> InputError:
    """The InputError reading ``data`` gives; it names the file and an offset."""
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        read_kdump(path)
    assert err.value.path == str(path)
    assert err.value.where is not None and err.value.where.startswith("offset "), str(err.value)
    return err.value


def offset_of(err: InputError) -> int:
    return int(err.where.split()[1])


@pytest.mark.parametrize("cut", ["5", "4095", "4096", "4104", "4200", "middle", "end-16", "end-1"])
def test_truncated_flattened(flat: bytes, tmp_path: Path, cut: str) -> None:
    n = {"middle": len(flat) // 2, "end-16": len(flat) - 16, "end-1": len(flat) - 1}.get(cut) or int(cut)
    err = read_bad(tmp_path, flat[:n])
    assert offset_of(err) <= n
    assert "truncated" in err.expected or "ends" in err.expected, str(err)


@pytest.mark.parametrize("cut", ["4", "300", "4150", "bitmap", "descriptors", "pages", "end-1"])
def test_truncated_raw(flat: bytes, tmp_path: Path, cut: str) -> None:
    image = reassemble(flat)
    layout = Layout(image)
    n = {"bitmap": layout.bitmap_at + 100, "descriptors": layout.desc_at + 1000,
         "pages": int(layout.desc["offset"].max()) - 10, "end-1": len(image) - 1}.get(cut) or int(cut)
    err = read_bad(tmp_path, image[:n])
    assert offset_of(err) <= len(image)


def test_empty_and_missing(tmp_path: Path) -> None:
    err = read_bad(tmp_path, b"")
    assert "empty" in err.expected
    with pytest.raises(InputError, match="no such file"):
        read_kdump(tmp_path / "nothing.dump")


@pytest.mark.parametrize("layout_name", ["flat", "raw"])
def test_flipped_signature(flat: bytes, tmp_path: Path, layout_name: str) -> None:
    data = bytearray(flat if layout_name == "flat" else reassemble(flat))
    data[0] ^= 0x20
    err = read_bad(tmp_path, bytes(data))
    assert offset_of(err) == 0 and "KDUMP" in err.expected and "makedumpfile" in err.expected
    # A flattened dump whose records hold a plain dump without its signature.
    if layout_name == "flat":
        data = bytearray(flat)
        data[file_offset(flat, 0)] ^= 0x20
        err = read_bad(tmp_path, bytes(data))
        assert offset_of(err) == file_offset(flat, 0) and "KDUMP" in err.expected


def patch(flat: bytes, layout_name: str, dump_offset: int, value: bytes) -> tuple[bytes, int]:
    """``flat`` or its plain image with ``value`` at dump offset ``dump_offset``; and the file
    offset of that dump byte (a flattened dump's bytes may span records: patched one by one)."""
    if layout_name == "flat":
        data = bytearray(flat)
        for k, byte in enumerate(value):
            data[file_offset(flat, dump_offset + k)] = byte
        return bytes(data), file_offset(flat, dump_offset)
    data = bytearray(reassemble(flat))
    data[dump_offset : dump_offset + len(value)] = value
    return bytes(data), dump_offset


def first_nonzero_compressed(layout: Layout) -> int:
    return int(np.flatnonzero(layout.desc["flags"] == 1)[0])


@pytest.mark.parametrize("layout_name", ["flat", "raw"])
def test_descriptor_past_the_end(flat: bytes, tmp_path: Path, layout_name: str) -> None:
    layout = Layout(reassemble(flat))
    i = first_nonzero_compressed(layout)
    for bad_offset in (len(layout.image) + 4096, 2**64 - 1, len(layout.image) - 3):
        data, at = patch(flat, layout_name, layout.desc_offset(i), struct.pack("<Q", bad_offset))
        err = read_bad(tmp_path, data)
        assert offset_of(err) == at, str(err)
        assert f"pfn {layout.pfns[i]}" in err.expected and "past the dump's end" in err.expected


@pytest.mark.parametrize("layout_name", ["flat", "raw"])
@pytest.mark.parametrize("damage", ["garbage", "short", "longer", "bad-flags", "raw-size"])
def test_page_that_does_not_decompress(flat: bytes, tmp_path: Path, layout_name: str, damage: str) -> None:
    layout = Layout(reassemble(flat))
    i = first_nonzero_compressed(layout)
    d = layout.desc[i]
    at = patch(flat, layout_name, layout.desc_offset(i), b"")[1]  # the descriptor is named
    if damage == "garbage":  # the compressed bytes themselves
        data, _ = patch(flat, layout_name, int(d["offset"]), b"\xff" * 16)
    else:
        size, flags = {"short": (int(d["size"]) // 2, 1), "longer": (int(d["size"]) + 7, 1),
                       "bad-flags": (int(d["size"]), 0x20), "raw-size": (int(d["size"]), 0)}[damage]
        data, _ = patch(flat, layout_name, layout.desc_offset(i) + 8, struct.pack("<II", size, flags))
    err = read_bad(tmp_path, data)
    assert offset_of(err) == at, str(err)
    assert f"pfn {layout.pfns[i]}" in err.expected
    assert {"garbage": "does not decompress", "short": "decompresses to", "longer": "follow its end",
            "bad-flags": "expected flags", "raw-size": "raw page of 4096"}[damage] in err.expected, str(err)


@pytest.mark.parametrize("field_name, dump_offset, value", [
    ("sub_hdr_size", 432, struct.pack("<I", 0xFFFFFFFF)),
    ("bitmap_blocks", 436, struct.pack("<I", 0xFFFFFFFE)),
    ("bitmap_blocks odd", 436, struct.pack("<I", 63)),
    ("block_size", 428, struct.pack("<I", 65536)),
    ("max_mapnr_64", 4096 + 96, struct.pack("<Q", 2**63)),
])
@pytest.mark.parametrize("layout_name", ["flat", "raw"])
def test_absurd_header_sizes(flat: bytes, tmp_path: Path, layout_name: str, field_name: str,
                             dump_offset: int, value: bytes) -> None:
    data, at = patch(flat, layout_name, dump_offset, value)
    tracemalloc.start()
    try:
        err = read_bad(tmp_path, data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * len(data) + (1 << 20), f"{field_name}: {peak} bytes allocated"
    assert offset_of(err) == at, str(err)


def test_bitmap_with_more_pages_than_descriptors(flat: bytes, tmp_path: Path) -> None:
    """Every bit of the bitmap set: 1M pfns whose descriptors would need 24 MiB the file lacks."""
    layout = Layout(reassemble(flat))
    image = bytearray(layout.image)
    image[layout.bitmap_at + layout.bitmap_len : layout.desc_at] = b"\xff" * layout.bitmap_len
    err = read_bad(tmp_path, bytes(image))
    assert "page descriptors" in err.expected


@pytest.mark.parametrize("record", ["size past the end", "negative offset", "absurd offset"])
def test_bad_flattened_records(flat: bytes, tmp_path: Path, record: str) -> None:
    value = {"size past the end": (0, 2**62), "negative offset": (-5, 464),
             "absurd offset": (2**62, 464)}[record]
    data = flat[:4096] + struct.pack(">qq", *value) + flat[4096 + 16 :]
    err = read_bad(tmp_path, data)
    assert offset_of(err) in (4096, len(data)), str(err)


def test_random_damage_gives_input_error_or_pages(flat: bytes, tmp_path: Path) -> None:
    """Seeded fuzzing of the real dump, flattened and raw: cuts and flipped bytes in the headers,
    bitmaps, descriptors and pages never escape as anything but an InputError."""
    rng = np.random.default_rng(1)
    path = tmp_path / "fuzz.dump"
    for base in (flat, reassemble(flat)):
        for _ in range(60):
            data = bytearray(base)
            if rng.random() < 0.3:
                data = data[: int(rng.integers(0, len(data)))]
            for _ in range(int(rng.integers(1, 6))):
                if data:
                    limit = min(len(data), 200_000) if rng.random() < 0.8 else len(data)
                    data[int(rng.integers(0, limit))] ^= int(rng.integers(1, 256))
            path.write_bytes(bytes(data))
            try:
                gfn, hashes = read_kdump(path)
            except InputError as e:
                assert e.path == str(path)
            else:
                assert len(gfn) == len(hashes)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw_layout=st.booleans(), cut=st.one_of(st.none(), st.floats(0, 1)),
       flips=st.lists(st.tuples(st.booleans(), st.integers(0, 2**40), st.integers(1, 255)), min_size=1, max_size=6))
def test_hypothesis_damage_gives_input_error_or_pages(flat: bytes, tmp_path: Path, raw_layout, cut, flips) -> None:
    """The same, generated by hypothesis (which keeps any failing case in its database): a cut
    at any point and bytes flipped mostly in the first 200 KB (headers, bitmaps, descriptors)."""
    data = bytearray(reassemble(flat) if raw_layout else flat)
    if cut is not None:
        data = data[: int(cut * len(data))]
    for in_headers, at, xor in flips:
        if data:
            data[at % (min(len(data), 200_000) if in_headers else len(data))] ^= xor
    path = tmp_path / "fuzz.dump"
    path.write_bytes(bytes(data))
    try:
        gfn, hashes = read_kdump(path)
    except InputError as e:
        assert e.path == str(path), str(e)
    else:
        assert len(gfn) == len(hashes)


def test_flattened_records_that_overlap_last_one_wins(flat: bytes, tmp_path: Path) -> None:
    """makedumpfile rewrites parts it wrote before (QEMU does not): each byte is the last record's."""
    want = read_kdump(write_copy(tmp_path, flat))
    garbage = np.random.default_rng(3).integers(0, 256, 4900, dtype=np.uint8).tobytes()
    early = flat[:4096] + struct.pack(">qq", 100, len(garbage)) + garbage + flat[4096:]
    got = read_kdump(write_copy(tmp_path, early, "early.dump"))
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    late = flat[:-16] + struct.pack(">qq", 0, 8) + b"XDUMP   " + flat[-16:]
    err = read_bad(tmp_path, late)
    assert offset_of(err) == len(flat) and "KDUMP" in err.expected


def write_copy(tmp_path: Path, data: bytes, name: str = "copy.dump") -> Path:
    (tmp_path / name).write_bytes(data)
    return tmp_path / name


def test_32_bit_header_named(flat: bytes, tmp_path: Path) -> None:
    image = bytearray(reassemble(flat))
    struct.pack_into("<II", image, 416, PAGE_SIZE, 0)  # DiskDumpHeader32 keeps block_size at 416
    struct.pack_into("<I", image, 428, 1 << 20)
    err = read_bad(tmp_path, bytes(image))
    assert offset_of(err) == 416 and "32-bit" in err.expected
