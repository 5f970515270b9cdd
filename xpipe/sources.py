"""Where each capture of the config comes from, and which files stage 1 reads of it.

A capture in the config's ``captures`` is one of three kinds (config/config.yaml):
a bundle on disk (``manifest: PATH``), a real capture the workflow records first
(``record: PRESET``, rule capture) or a SYNTHETIC bundle it generates
(``synthetic: {...}``, rule make_synthetic). :func:`capture_source` turns an
entry into an object that answers the workflow's questions alike for every kind.

The workflow imports this module to build its DAG, so it must stay cheap: the
QEMU capture code is not imported, a recorded capture needs only its preset's
spec (xpipe.capture.spec).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import fields

from xpipe.bundle import MANIFEST
from xpipe.errors import InputError
from xpipe.readers.manifest import Manifest, load_manifest
from xpipe.synthetic import DISK, SyntheticSpec, domain_ids

#: The keys of a capture entry, one of which names its kind.
CAPTURE_KINDS = ("manifest", "record", "synthetic")
#: Where the errors of a capture entry say the entry is.
CONFIG = "config"


class CaptureSource(ABC):
    """One capture of the config: its manifest, domains and disks, and the files stage 1 reads."""

    #: Whether the bundle is SYNTHETIC (labelled so in every table and figure).
    synthetic: bool
    #: Whether a rule of the workflow makes the bundle (else it exists before the run).
    made_by_workflow: bool
    #: Whether stage 1 skips and counts bad trace records instead of stopping at the first.
    lenient: bool = False
    #: Stage 1 keeps every k-th memory snapshot of each domain, and the last (1: all).
    keep_every: int = 1

    def __init__(self, name: str):
        self.name = name

    @property
    @abstractmethod
    def manifest_path(self) -> str:
        """Where the workflow finds the bundle's manifest, or writes it."""

    @abstractmethod
    def domains(self) -> list[str]:
        """The domain ids, in the manifest's order."""

    @abstractmethod
    def disks(self) -> list[str]:
        """The names of the disk images the domains read from."""

    @abstractmethod
    def domain_disk(self, domain: str) -> str | None:
        """The disk the domain reads from, or None (a domain without reads)."""

    @abstractmethod
    def domain_files(self, domain: str) -> list[str]:
        """Every file stage 1 reads for the domain, the manifest included, so a changed file reruns it."""

    @abstractmethod
    def disk_files(self, disk: str) -> list[str]:
        """Every file stage 1 reads for the disk, the manifest included."""

    def _check_domain(self, domain: str) -> None:
        if domain not in self.domains():
            raise KeyError(f"capture {self.name!r} has no domain {domain!r}")

    def _check_disk(self, disk: str) -> None:
        if disk not in self.disks():
            raise KeyError(f"capture {self.name!r} has no disk {disk!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, manifest_path={self.manifest_path!r})"


class OnDisk(CaptureSource):
    """A bundle that exists before the run. Its manifest is read once, here, so a bad one
    stops the workflow before any job starts."""

    made_by_workflow = False

    def __init__(self, name: str, manifest_path: str):
        super().__init__(name)
        self._path = manifest_path
        self.manifest: Manifest = load_manifest(manifest_path)
        self.synthetic = self.manifest.synthetic

    @property
    def manifest_path(self) -> str:
        return self._path

    def domains(self) -> list[str]:
        return [d.id for d in self.manifest.domains]

    def disks(self) -> list[str]:
        return sorted(self.manifest.disks)

    def domain_disk(self, domain: str) -> str | None:
        self._check_domain(domain)
        disk = self.manifest.domain(domain).disk
        return disk.name if disk else None

    def domain_files(self, domain: str) -> list[str]:
        self._check_domain(domain)
        d = self.manifest.domain(domain)
        files = [self._path]
        files += [str(s.path) for s in d.snapshots]
        files += [str(s.kpageflags) for s in d.snapshots if s.kpageflags]
        files += [str(d.reads)] if d.reads else []
        return files

    def disk_files(self, disk: str) -> list[str]:
        self._check_disk(disk)
        d = self.manifest.disks[disk]
        return [self._path, str(d.block_hashes or d.image)]


class _MadeByWorkflow(CaptureSource):
    """A bundle a rule writes: its domains and their disks are known before it exists, and
    stage 1 depends only on its manifest (written last, so it names finished files)."""

    made_by_workflow = True
    _domains: list[str]
    _domain_disks: dict[str, str]  # domain -> the disk it reads

    def domains(self) -> list[str]:
        return list(self._domains)

    def disks(self) -> list[str]:
        return sorted(set(self._domain_disks.values()))

    def domain_disk(self, domain: str) -> str | None:
        self._check_domain(domain)
        return self._domain_disks[domain]

    def domain_files(self, domain: str) -> list[str]:
        self._check_domain(domain)
        return [self.manifest_path]

    def disk_files(self, disk: str) -> list[str]:
        self._check_disk(disk)
        return [self.manifest_path]


class Recorded(_MadeByWorkflow):
    """A real capture that rule capture records with the QEMU guests of an ``xpipe capture`` preset
    (a spec file of config/captures/)."""

    synthetic = False

    def __init__(self, name: str, preset: str):
        super().__init__(name)
        # The preset's spec only: the capture runtime (QEMU, images) is rule capture's.
        from xpipe.capture.spec import PRESETS
        from xpipe.capture.spec import preset as preset_spec

        if preset not in PRESETS:
            raise InputError(CONFIG, f"captures.{name}.record",
                             f"expected one of the presets {', '.join(PRESETS)}, got {preset!r}")
        self.preset = preset
        spec = preset_spec(preset)  # its spec file, checked: a bad one is an InputError naming it
        self._domains = [d.id for d in spec.domains]
        self._domain_disks = {d.id: spec.disk_of(d) for d in spec.domains}  # server guests: one per release

    @property
    def manifest_path(self) -> str:
        return f"results/captures/{self.preset}/{MANIFEST}"


class Synthetic(_MadeByWorkflow):
    """A SYNTHETIC bundle that rule make_synthetic generates from the entry's parameters."""

    synthetic = True

    def __init__(self, name: str, params: dict | None):
        super().__init__(name)
        self.spec = _synthetic_spec(name, params)
        self._domains = domain_ids(self.spec)
        self._domain_disks = dict.fromkeys(self._domains, DISK)

    @property
    def manifest_path(self) -> str:
        return f"results/synthetic/{self.name}/{MANIFEST}"


def _synthetic_spec(name: str, params: dict | None) -> SyntheticSpec:
    """The generator's spec from a capture entry's ``synthetic`` parameters (defaults for keys left out)."""
    where = f"captures.{name}.synthetic"
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InputError(CONFIG, where, f"expected a mapping of generator parameters, got {params!r}")
    s = dict(params)
    for key in ("workloads", "domains_per_workload", "snapshot_times_s"):
        if key in s:
            s[key] = tuple(s[key])
    known = [f.name for f in fields(SyntheticSpec)]
    unknown = sorted(set(s) - set(known))
    if unknown:
        raise InputError(CONFIG, f"{where}.{unknown[0]}", f"unknown key (known: {', '.join(known)})")
    spec = SyntheticSpec(**s)
    if len(spec.workloads) != len(spec.domains_per_workload):
        raise InputError(CONFIG, where, "expected as many domains_per_workload as workloads")
    return spec


def capture_source(name: str, entry: dict) -> CaptureSource:
    """The source of capture ``name`` from its entry ``entry`` in the config's ``captures``.

    A bad entry raises InputError naming its key; a bundle on disk with a bad
    manifest raises the manifest's InputError.
    """
    kinds = [k for k in CAPTURE_KINDS if isinstance(entry, dict) and k in entry]
    if len(kinds) != 1:
        got = f"got {', '.join(kinds)}" if kinds else f"got {entry!r}"
        raise InputError(CONFIG, f"captures.{name}",
                         f"expected exactly one of {', '.join(CAPTURE_KINDS)}; {got}")
    kind = kinds[0]
    lenient = entry.get("lenient", False)
    if not isinstance(lenient, bool):
        raise InputError(CONFIG, f"captures.{name}.lenient", f"expected true or false, got {lenient!r}")
    if kind == "synthetic":
        src: CaptureSource = Synthetic(name, entry["synthetic"])
    elif not isinstance(entry[kind], str):
        raise InputError(CONFIG, f"captures.{name}.{kind}", f"expected a string, got {entry[kind]!r}")
    elif kind == "record":
        src = Recorded(name, entry[kind])
    else:
        src = OnDisk(name, entry[kind])
    keep_every = entry.get("keep_every", 1)
    if isinstance(keep_every, bool) or not isinstance(keep_every, int) or keep_every < 1:
        raise InputError(CONFIG, f"captures.{name}.keep_every", f"expected a whole number >= 1, got {keep_every!r}")
    src.lenient = lenient
    src.keep_every = keep_every
    return src
