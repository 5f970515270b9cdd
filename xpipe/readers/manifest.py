"""The capture manifest (docs/capture-bundle.md): which domains, which files.

Every key is checked: a key the format does not define (a typo such as
``kpagefalgs``) is an error that says which key was probably meant, at every
level, so nothing a manifest says is dropped silently.
"""

from __future__ import annotations

import codecs
import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from xpipe.bundle import FORMAT, PAGE_SIZE
from xpipe.errors import InputError
from xpipe.readers.registry import DELTA_READERS, READ_TRACE_READERS, SNAPSHOT_KINDS


@dataclass(frozen=True)
class HashKind:
    """Which files carry contents identified this way."""

    snapshots: tuple[str, ...]  # snapshot kinds (SNAPSHOT_KINDS)
    reads: str | None  # the read-trace format (a key of READ_TRACE_READERS), if any


#: What identifies a content in a bundle. Memory dumps, compact page files and
#: disk images are xxh3-64 of the 4 KiB page; FIU traces carry MD5 digests; UMass
#: memory traces 32-bit hashes. Contents of different kinds are never compared:
#: one bundle holds one kind.
HASH_KINDS = {
    "xxh3-64": HashKind(("pages", "pmemsave", "elf", "kdump", "xen", "delta"), "qemu-blk"),
    "md5": HashKind((), "fiu"),
    "32-bit": HashKind(("umass",), None),
}
READS_KEYS = ("device", "process")  # + the formats: which requests of a shared trace are the domain's

_ID = re.compile(r"[A-Za-z0-9_.-]+")  # fullmatch: "a\n" is no id

#: The keys each level of a manifest may hold (docs/capture-bundle.md). A
#: snapshot also holds exactly one of SNAPSHOT_KINDS (its kind).
TOP_KEYS = ("format", "synthetic", "description", "page_size", "hash_kind", "disks", "domains")
DISK_KEYS = ("block_hashes", "image", "size_bytes")
DOMAIN_KEYS = ("id", "workload", "memory_mib", "disk", "os", "reads", "reads_start_epoch_s", "console",
               "snapshots")
SNAPSHOT_KEYS = ("time_s", "kpageflags", "taken_at_s", "guest_uptime_s", "raw_dump", "ksm")  # + the kinds
#: The counts of a snapshot's ``ksm`` record (beside ``guests``, the batch it covers).
KSM_COUNTS = ("pages_sharing", "pages_shared", "full_scans", "backed_pages", "predicted_sharing",
              "predicted_sharing_all_mergeable")


@dataclass(frozen=True)
class KsmRecord:
    """The host's KSM at a snapshot of live guests, beside xpipe's prediction for the same
    moment (``predicted_sharing``: backed pages minus distinct contents over ``guests``)."""

    guests: tuple[str, ...]
    pages_sharing: int
    pages_shared: int
    full_scans: int
    backed_pages: int
    predicted_sharing: int
    predicted_sharing_all_mergeable: int
    #: KSM was read once it had settled on the paused guests, not as the live guests left it
    settled: bool = False


@dataclass(frozen=True)
class Snapshot:
    time_s: float
    kind: str  # one of SNAPSHOT_KINDS
    path: Path
    kpageflags: Path | None
    ksm: KsmRecord | None = None


@dataclass(frozen=True)
class Disk:
    name: str
    block_hashes: Path | None
    image: Path | None


@dataclass(frozen=True)
class Domain:
    id: str
    workload: str
    memory_mib: int  # 0 for a domain without memory snapshots (an I/O-only trace)
    disk: Disk | None
    reads: Path | None
    reads_start_epoch_s: float | None
    snapshots: tuple[Snapshot, ...]
    reads_format: str = "qemu-blk"  # a key of READ_TRACE_READERS
    #: which of a shared trace's requests are this domain's (FIU: device "major:minor", process)
    reads_select: tuple[tuple[str, str], ...] = ()
    #: informational: the guest's operating system, e.g. "debian trixie, linux 6.12.57+deb13-amd64"
    os: str | None = None


@dataclass(frozen=True)
class Manifest:
    path: Path
    synthetic: bool
    description: str
    hash_kind: str  # a key of HASH_KINDS
    disks: dict[str, Disk]
    domains: tuple[Domain, ...]

    def domain(self, domain_id: str) -> Domain:
        for d in self.domains:
            if d.id == domain_id:
                return d
        raise KeyError(f"{self.path}: no domain {domain_id!r}")


class _Loader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark)
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


class _Reader:
    """Typed access to YAML values that names the key path on error."""

    def __init__(self, path: Path):
        self.path = path
        self.root = path.parent

    def fail(self, where: str | None, expected: str):
        raise InputError(self.path, where or None, expected)

    def mapping(self, value, where: str, what: str) -> dict:
        if not isinstance(value, dict):
            self.fail(where, f"expected a mapping with {what}, got {_short(value)}")
        return value

    def known(self, d: dict, where: str, keys) -> None:
        """Every key of ``d`` is one of ``keys``, else an error naming it and what was meant."""
        keys = list(keys)
        for key in d:
            if isinstance(key, str) and key in keys:
                continue
            close = difflib.get_close_matches(str(key), keys, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.fail(f"{where}.{key}" if where else str(key),
                      f"unknown key{hint} (known: {', '.join(keys)})")

    def get(self, d: dict, key: str, where: str, kind, required=True, default=None):
        if key not in d or d[key] is None:
            if required:
                self.fail(where, f"missing key '{key}'")
            return default
        value = d[key]
        at = f"{where}.{key}" if where else key
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            self.fail(at, f"expected {kind.__name__}, got {_short(value)}")
        if kind is float and not math.isfinite(value):
            self.fail(at, f"expected a finite number, got {value!r}")
        return value

    def file(self, d: dict, key: str, where: str, required=True) -> Path | None:
        name = self.get(d, key, where, str, required)
        if name is None:
            return None
        p = self.root / name
        try:
            found = p.is_file()
        except OSError as e:  # a name too long for the file system, say
            self.fail(f"{where}.{key}", f"expected a file name (relative to the manifest), got "
                                        f"{_short(name)}: {e.strerror}")
        if not found:
            self.fail(f"{where}.{key}", f"file {_short(name)} does not exist (relative to the manifest)")
        return p


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(path: Path) -> str:
    """The manifest's text: UTF-8 (a byte-order mark is allowed), else an InputError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, None, "capture manifest not found") from None
    except OSError as e:
        raise InputError(path, None, f"expected a readable capture manifest ({e.strerror or e})") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise InputError(path, "offset 0", "expected UTF-8 text, found a UTF-16/32 byte-order mark")
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        at = bom + e.start
        raise InputError(path, f"offset {at}", f"expected UTF-8 text, found byte {data[at]:#04x}") from None


def _load_yaml(path: Path):
    text = _text(path)
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}" if mark else None
        raise InputError(path, where, f"expected YAML ({e.problem or e.context or e})") from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow
        line = text.count("\n", 0, e.position) + 1
        raise InputError(path, f"line {line}", f"expected YAML text, found character {e.character!r}") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as e:
        # e.g. a date-like value that is no date (2024-13-45): YAML's constructors raise plain errors
        raise InputError(path, None, f"expected YAML ({type(e).__name__}: {e})") from None


def load_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    raw = _load_yaml(path)
    r = _Reader(path)
    if not isinstance(raw, dict):
        r.fail(None, f"expected a YAML mapping with keys format, domains; got {_short(raw)}")
    if raw.get("format") != FORMAT:
        r.fail("format", f"expected '{FORMAT}', got {_short(raw.get('format'))}")
    r.known(raw, "", TOP_KEYS)
    hash_kind = r.get(raw, "hash_kind", "", str, required=False, default="xxh3-64")
    if hash_kind not in HASH_KINDS:
        r.fail("hash_kind", f"expected one of {', '.join(HASH_KINDS)}, got {_short(hash_kind)}")
    page_size = raw.get("page_size", PAGE_SIZE)
    if isinstance(page_size, bool) or page_size != PAGE_SIZE:
        r.fail("page_size", f"only {PAGE_SIZE}-byte pages are supported")
    disks = {}
    for name, d in (r.get(raw, "disks", "", dict, required=False, default={})).items():
        where = f"disks.{name}"
        if not isinstance(name, str) or not _ID.fullmatch(name):
            r.fail(where, f"expected a disk name of letters, digits, _.- ; got {_short(name)}")
        r.mapping(d, where, "block_hashes or image")
        r.known(d, where, DISK_KEYS)
        bh = r.file(d, "block_hashes", where, required=False)
        img = r.file(d, "image", where, required=False)
        if bh is None and img is None:
            r.fail(where, "expected 'block_hashes' or 'image'")
        size = r.get(d, "size_bytes", where, int, required=False)
        if size is not None and size < 0:
            r.fail(f"{where}.size_bytes", f"expected a size in bytes, got {size}")
        disks[name] = Disk(name, bh, img)
    domains_raw = r.get(raw, "domains", "", list)
    if not domains_raw:
        r.fail("domains", "expected at least one domain")
    kinds_known = SNAPSHOT_KINDS
    domains, seen = [], set()
    snapshot_files: list[tuple[str, Path]] = []
    for i, d in enumerate(domains_raw):
        where = f"domains[{i}]"
        r.mapping(d, where, "id, workload, memory_mib, snapshots")
        r.known(d, where, DOMAIN_KEYS)
        did = r.get(d, "id", where, str)
        if not _ID.fullmatch(did) or did in seen:
            r.fail(f"{where}.id", f"expected a unique id of letters, digits, _.- ; got {did!r}")
        seen.add(did)
        disk_name = r.get(d, "disk", where, str, required=False)
        if disk_name is not None and disk_name not in disks:
            r.fail(f"{where}.disk", f"expected one of the disks {sorted(disks)}, got {disk_name!r}")
        reads, reads_format, select = _reads(r, d, where)
        carried = HASH_KINDS[hash_kind]
        if reads is not None and reads_format != carried.reads:
            r.fail(f"{where}.reads", (f"expected a {carried.reads} trace" if carried.reads else "expected no reads")
                   + f": the bundle's hash_kind is {hash_kind}, and contents of different hash kinds are "
                     "never compared")
        if reads is not None and reads_format == "qemu-blk" and disk_name is None:
            r.fail(f"{where}.reads", "a QEMU reads trace needs the 'disk' it reads from (its content)")
        if reads_format != "qemu-blk" and disk_name is not None:
            r.fail(f"{where}.disk", f"a {reads_format} trace carries its contents; expected no disk")
        r.get(d, "console", where, str, required=False)  # informational
        snaps = []
        # a guest's capture has memory; only a trace that is I/O alone (FIU) may have none
        io_only = reads is not None and reads_format != "qemu-blk"
        if "snapshots" not in d and not io_only:
            r.fail(where, "missing key 'snapshots' (only an I/O trace such as fiu may have none)")
        if "snapshots" in d and not carried.snapshots:
            r.fail(f"{where}.snapshots", f"expected no memory snapshots: the bundle's hash_kind is {hash_kind}, "
                                         f"which only {carried.reads} traces carry")
        for j, s in enumerate(r.get(d, "snapshots", where, list, required=not io_only, default=[])):
            sw = f"{where}.snapshots[{j}]"
            r.mapping(s, sw, f"time_s and one of {', '.join(kinds_known)}")
            r.known(s, sw, SNAPSHOT_KEYS[:1] + kinds_known + SNAPSHOT_KEYS[1:])
            kinds = [k for k in kinds_known if k in s]
            if len(kinds) != 1:
                r.fail(sw, f"expected exactly one of {', '.join(kinds_known)}")
            if kinds[0] not in carried.snapshots:
                r.fail(f"{sw}.{kinds[0]}", f"expected one of {', '.join(carried.snapshots)}: the bundle's "
                                           f"hash_kind is {hash_kind}, and contents of different hash kinds "
                                           "are never compared")
            if j == 0 and kinds[0] in DELTA_READERS:
                r.fail(f"{sw}.{kinds[0]}", "expected a full snapshot first: a delta holds only the frames "
                                           "changed since the domain's previous snapshot")
            time_s = r.get(s, "time_s", sw, float)
            if time_s < 0:
                r.fail(f"{sw}.time_s", f"expected seconds since the guest started (0 or more), got {time_s}")
            for info in ("taken_at_s", "guest_uptime_s"):  # informational
                r.get(s, info, sw, float, required=False)
            r.get(s, "raw_dump", sw, str, required=False)
            snap_path = r.file(s, kinds[0], sw)
            kpageflags = r.file(s, "kpageflags", sw, required=False)
            snapshot_files.append((f"{sw}.{kinds[0]}", snap_path))
            if kpageflags is not None:
                snapshot_files.append((f"{sw}.kpageflags", kpageflags))
            ksm = _ksm_record(r, s, sw, d.get("id")) if "ksm" in s else None
            snaps.append(Snapshot(time_s=time_s, kind=kinds[0], path=snap_path, kpageflags=kpageflags, ksm=ksm))
        times = [s.time_s for s in snaps]
        if "snapshots" in d and (not snaps or times != sorted(set(times))):
            r.fail(f"{where}.snapshots", "expected one or more snapshots in strictly increasing time_s")
        memory_mib = r.get(d, "memory_mib", where, int, required=bool(snaps), default=0)
        if memory_mib < 0 or (snaps and memory_mib == 0):
            r.fail(f"{where}.memory_mib", "expected a positive number of MiB")
        domains.append(
            Domain(
                id=did,
                workload=r.get(d, "workload", where, str),
                memory_mib=memory_mib,
                disk=disks.get(disk_name) if disk_name else None,
                reads=reads,
                reads_start_epoch_s=r.get(d, "reads_start_epoch_s", where, float, required=False),
                snapshots=tuple(snaps),
                reads_format=reads_format,
                reads_select=select,
                os=r.get(d, "os", where, str, required=False),
            )
        )
    _check_kpageflags_files(r, snapshot_files)
    _check_ksm_records(r, domains)
    return Manifest(
        path=path,
        synthetic=r.get(raw, "synthetic", "", bool, required=False, default=False),
        description=r.get(raw, "description", "", str, required=False, default=""),
        hash_kind=hash_kind,
        disks=disks,
        domains=tuple(domains),
    )


def _reads(r: _Reader, d: dict, where: str) -> tuple[Path | None, str, tuple[tuple[str, str], ...]]:
    """A domain's reads: a path (a QEMU trace) or a mapping naming the format, its file and
    which of its requests are the domain's."""
    value = d.get("reads")
    if value is None or isinstance(value, str):
        return r.file(d, "reads", where, required=False), "qemu-blk", ()
    at = f"{where}.reads"
    r.mapping(value, at, f"one of {', '.join(READ_TRACE_READERS)} naming the trace file")
    r.known(value, at, tuple(READ_TRACE_READERS) + READS_KEYS)
    formats = [f for f in READ_TRACE_READERS if f in value]
    if len(formats) != 1:
        r.fail(at, f"expected exactly one of {', '.join(READ_TRACE_READERS)}")
    select = tuple((k, r.get(value, k, at, str)) for k in READS_KEYS if k in value)
    if select and formats[0] != "fiu":
        r.fail(f"{at}.{select[0][0]}", f"expected no selection for a {formats[0]} trace (one domain each)")
    if dict(select).get("device") is not None and not re.fullmatch(r"\d+:\d+", dict(select)["device"]):
        r.fail(f"{at}.device", f"expected 'major:minor', got {_short(dict(select)['device'])}")
    return r.file(value, formats[0], at), formats[0], select


def _ksm_record(r: _Reader, s: dict, where: str, domain_id) -> KsmRecord:
    """A snapshot's ``ksm`` record, every count a non-negative integer and ``guests`` the ids
    of the batch, this domain among them."""
    at = f"{where}.ksm"
    k = r.mapping(s["ksm"], at, f"guests and {', '.join(KSM_COUNTS)}")
    r.known(k, at, ("guests", *KSM_COUNTS, "settled"))
    guests = r.get(k, "guests", at, list)
    if not guests or not all(isinstance(g, str) for g in guests) or domain_id not in guests:
        r.fail(f"{at}.guests", f"expected the ids of the guests KSM ran on, {domain_id!r} among them, "
                               f"got {_short(guests)}")
    counts = {}
    for key in KSM_COUNTS:
        counts[key] = r.get(k, key, at, int)
        if counts[key] < 0:
            r.fail(f"{at}.{key}", f"expected a count (0 or more), got {counts[key]}")
    return KsmRecord(tuple(guests), **counts, settled=r.get(k, "settled", at, bool, required=False, default=False))


def _check_ksm_records(r: _Reader, domains: list[Domain]) -> None:
    """Every guest a ``ksm`` record names is a domain of the bundle, and every guest of a batch
    carries the same record at the same time (KSM ran once on the batch)."""
    ids = {d.id for d in domains}
    first: dict[tuple[float, tuple[str, ...]], KsmRecord] = {}
    for i, d in enumerate(domains):
        for j, s in enumerate(d.snapshots):
            if s.ksm is None:
                continue
            at = f"domains[{i}].snapshots[{j}].ksm"
            missing = [g for g in s.ksm.guests if g not in ids]
            if missing:
                r.fail(f"{at}.guests", f"expected domains of this bundle, got {missing[0]!r}")
            seen = first.setdefault((s.time_s, s.ksm.guests), s.ksm)
            if seen != s.ksm:
                r.fail(at, f"expected the same KSM record as the batch's other guests at {s.time_s:g} s "
                           f"({', '.join(s.ksm.guests)}): KSM ran once on the batch")


def _check_kpageflags_files(r: _Reader, files: list[tuple[str, Path]]) -> None:
    """No kpageflags key may name a file a snapshot reads its pages from: page hashes
    would pass for flags of the right length and type the pages silently."""
    pages: dict[tuple[int, int], str] = {}
    for key, p in files:
        if not key.endswith(".kpageflags"):
            st = p.stat()
            pages.setdefault((st.st_dev, st.st_ino), key)
    for key, p in files:
        if key.endswith(".kpageflags"):
            st = p.stat()
            other = pages.get((st.st_dev, st.st_ino))
            if other is not None:
                r.fail(key, f"expected the guest's kpageflags, not the snapshot file {other} names "
                            f"({p.name!r})")
