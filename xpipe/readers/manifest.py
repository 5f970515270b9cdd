"""The capture manifest (docs/capture-bundle.md): which domains, which files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from xpipe.bundle import FORMAT, PAGE_SIZE
from xpipe.readers.registry import SNAPSHOT_READERS
from xpipe.errors import InputError

_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Snapshot:
    time_s: float
    kind: str  # a key of SNAPSHOT_READERS
    path: Path
    kpageflags: Path | None


@dataclass(frozen=True)
class Disk:
    name: str
    block_hashes: Path | None
    image: Path | None


@dataclass(frozen=True)
class Domain:
    id: str
    workload: str
    memory_mib: int
    disk: Disk | None
    reads: Path | None
    reads_start_epoch_s: float | None
    snapshots: tuple[Snapshot, ...]


@dataclass(frozen=True)
class Manifest:
    path: Path
    synthetic: bool
    description: str
    disks: dict[str, Disk]
    domains: tuple[Domain, ...]

    def domain(self, domain_id: str) -> Domain:
        for d in self.domains:
            if d.id == domain_id:
                return d
        raise KeyError(f"{self.path}: no domain {domain_id!r}")


class _Reader:
    """Typed access to YAML values that names the key path on error."""

    def __init__(self, path: Path):
        self.path = path
        self.root = path.parent

    def fail(self, where: str, expected: str):
        raise InputError(self.path, where, expected)

    def get(self, d: dict, key: str, where: str, kind, required=True, default=None):
        if key not in d or d[key] is None:
            if required:
                self.fail(where, f"missing key '{key}'")
            return default
        value = d[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            self.fail(f"{where}.{key}", f"expected {kind.__name__}, got {value!r}")
        return value

    def file(self, d: dict, key: str, where: str, required=True) -> Path | None:
        name = self.get(d, key, where, str, required)
        if name is None:
            return None
        p = self.root / name
        if not p.is_file():
            self.fail(f"{where}.{key}", f"file {name!r} does not exist (relative to the manifest)")
        return p


def load_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(path, None, "capture manifest not found") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        raise InputError(path, where, f"expected YAML ({getattr(e, 'problem', e)})") from None
    r = _Reader(path)
    if not isinstance(raw, dict):
        r.fail(None, "expected a YAML mapping with keys format, domains")
    if raw.get("format") != FORMAT:
        r.fail("format", f"expected '{FORMAT}', got {raw.get('format')!r}")
    if raw.get("page_size", PAGE_SIZE) != PAGE_SIZE:
        r.fail("page_size", f"only {PAGE_SIZE}-byte pages are supported")
    disks = {}
    for name, d in (r.get(raw, "disks", "", dict, required=False, default={})).items():
        where = f"disks.{name}"
        if not isinstance(d, dict):
            r.fail(where, "expected a mapping with block_hashes or image")
        bh = r.file(d, "block_hashes", where, required=False)
        img = r.file(d, "image", where, required=False)
        if bh is None and img is None:
            r.fail(where, "expected 'block_hashes' or 'image'")
        disks[name] = Disk(name, bh, img)
    domains_raw = r.get(raw, "domains", "", list)
    if not domains_raw:
        r.fail("domains", "expected at least one domain")
    domains, seen = [], set()
    for i, d in enumerate(domains_raw):
        where = f"domains[{i}]"
        if not isinstance(d, dict):
            r.fail(where, "expected a mapping")
        did = r.get(d, "id", where, str)
        if not _ID.match(did) or did in seen:
            r.fail(f"{where}.id", f"expected a unique id of letters, digits, _.- ; got {did!r}")
        seen.add(did)
        disk_name = r.get(d, "disk", where, str, required=False)
        if disk_name is not None and disk_name not in disks:
            r.fail(f"{where}.disk", f"expected one of the disks {sorted(disks)}, got {disk_name!r}")
        reads = r.file(d, "reads", where, required=False)
        if reads is not None and disk_name is None:
            r.fail(f"{where}.reads", "a reads trace needs the 'disk' it reads from")
        snaps = []
        for j, s in enumerate(r.get(d, "snapshots", where, list)):
            sw = f"{where}.snapshots[{j}]"
            kinds = [k for k in SNAPSHOT_READERS if k in s]
            if len(kinds) != 1:
                r.fail(sw, f"expected exactly one of {', '.join(SNAPSHOT_READERS)}")
            snaps.append(
                Snapshot(
                    time_s=r.get(s, "time_s", sw, float),
                    kind=kinds[0],
                    path=r.file(s, kinds[0], sw),
                    kpageflags=r.file(s, "kpageflags", sw, required=False),
                )
            )
        times = [s.time_s for s in snaps]
        if not snaps or times != sorted(set(times)):
            r.fail(f"{where}.snapshots", "expected one or more snapshots in strictly increasing time_s")
        memory_mib = r.get(d, "memory_mib", where, int)
        if memory_mib <= 0:
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
            )
        )
    return Manifest(
        path=path,
        synthetic=r.get(raw, "synthetic", "", bool, required=False, default=False),
        description=r.get(raw, "description", "", str, required=False, default=""),
        disks=disks,
        domains=tuple(domains),
    )
