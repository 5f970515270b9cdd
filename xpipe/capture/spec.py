"""What to capture: guests, workloads, snapshot times; read from capture spec files.

A capture spec is a YAML file (docs/capture.md) checked against
workflow/schemas/capture.schema.yaml by xpipe.configcheck (unknown keys with the
key probably meant, finite numbers in range, one line naming the file and the
key), then by :meth:`CaptureSpec.validate` (workloads of the guest kind, release,
strictly increasing times, unique ids; for ``guest: image`` the user's image file and its
format, xpipe.capture.userimage). The presets are the spec files in
config/captures/: ``preset(NAME)`` reads config/captures/NAME.yaml.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from xpipe.capture.errors import CaptureError
from xpipe.capture.workloads import BUSYBOX_WORKLOADS, DEBIAN_WORKLOADS, SERVER_WORKLOADS
from xpipe.errors import InputError

_ROOT = Path(__file__).resolve().parents[2]
#: The presets: one spec file each, named NAME.yaml.
PRESET_DIR = _ROOT / "config" / "captures"
#: The JSON Schema every spec file is checked against.
SCHEMA = _ROOT / "workflow" / "schemas" / "capture.schema.yaml"

GUEST_KINDS = ("debian", "busybox", "server", "image")
#: The releases each guest kind can be built from (debian: xpipe.capture.rootfs.SUITE; server:
#: xpipe.capture.servers.SERVER_RELEASES, the first the default, and per domain too).
RELEASES = {"debian": ("bookworm",), "busybox": (), "server": ("bookworm", "trixie"), "image": ()}
#: The workloads of each guest kind (xpipe/capture/workloads.py); an image guest's workload is
#: a shell command its agent runs (IMAGE_NO_WORKLOAD: none).
WORKLOADS = {"debian": DEBIAN_WORKLOADS, "busybox": BUSYBOX_WORKLOADS, "server": SERVER_WORKLOADS}
#: How a snapshot's memory lands in the bundle: page hashes of a pmemsave dump (compact
#: `pages` files), the same with each snapshot after a guest's first stored as the frames
#: that changed since the one before when that is smaller (`delta` files), or QEMU's own
#: kdump-compressed dump kept whole (`kdump` snapshots).
SNAPSHOT_FORMATS = ("pages", "delta", "kdump-zlib")
#: The disk each guest kind reads, by its name under `disks` in the manifest (debian: rootfs.SUITE;
#: server: one disk per release, server-RELEASE, this the default release's).
DISK_NAMES = {"debian": "bookworm", "busybox": "busybox-data", "server": "server-bookworm"}
#: The workload of an image guest that runs no command (the manifest's `workload`).
IMAGE_NO_WORKLOAD = "none"
_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
#: Guest memory a spec may ask for (as workflow/schemas/capture.schema.yaml says): up to 64 GiB,
#: which a capture streams and hashes without holding it (xpipe.capture.guest).
MIN_MEMORY_MIB, MAX_MEMORY_MIB = 64, 65536


class SpecError(CaptureError, InputError):
    """A capture spec that cannot be captured: one line naming the spec (file), the key and
    what was expected. A CaptureError for the command line, an InputError for the workflow."""

    def __init__(self, path: str | Path, where: str | None, expected: str):
        InputError.__init__(self, path, where, expected)


@dataclass(frozen=True)
class DomainSpec:
    id: str
    workload: str
    memory_mib: int
    release: str | None = None  # server guests only: this domain's release (default: the spec's)


@dataclass(frozen=True)
class ImageSpec:
    """The user's disk image an ``image`` guest boots (docs/capture.md, "Your own image")."""

    path: Path
    format: str  # raw or qcow2, as `qemu-img info` says
    boot: str = "bootloader"  # or kernel: QEMU loads kernel (+ initrd) with append
    kernel: Path | None = None
    initrd: Path | None = None
    append: str = ""
    agent: bool = False  # the image runs scripts/guest-agent (kpageflags, readiness, workload)


@dataclass
class CaptureSpec:
    guest: str
    domains: list[DomainSpec]
    times_s: list[float]
    batch_size: int = 2
    boot_timeout_s: float = 180.0
    description: str = ""
    snapshot_format: str = "pages"  # one of SNAPSHOT_FORMATS
    release: str | None = None  # one of RELEASES[guest]; None: the first (debian: bookworm)
    image: ImageSpec | None = None  # guest: image only
    #: KSM's scanning settings (pages_to_scan, sleep_millisecs) when KSM runs on the live
    #: guests and each snapshot records its counters (xpipe.capture.ksm); None: KSM untouched.
    ksm: dict[str, int] | None = None

    def disk_of(self, d: DomainSpec) -> str:
        """The manifest name of the disk domain ``d`` reads: its release's image for server guests."""
        if self.guest == "server":
            return f"server-{d.release or self.release or RELEASES['server'][0]}"
        if self.guest == "image":
            from xpipe.capture.userimage import disk_name

            return disk_name(self.image.path)
        return DISK_NAMES[self.guest]

    def validate(self, source: str = "capture spec") -> None:
        """SpecError ``(source, key, expected)`` unless this can be captured; ``source`` names
        the spec file it came from."""

        def fail(where: str | None, expected: str):
            raise SpecError(source, where, expected)

        if self.guest not in GUEST_KINDS:
            fail("guest", f"unknown guest kind {self.guest!r}; expected one of {', '.join(GUEST_KINDS)}")
        releases = RELEASES[self.guest]
        if self.release is not None and self.release not in releases:
            fail("release", (f"expected one of {', '.join(releases)}" if releases
                             else f"expected no release for {self.guest} guests") + f", got {self.release!r}")
        if (self.image is not None) != (self.guest == "image"):
            fail("image", "expected for guest: image only" if self.image is not None
                 else "required key is missing (guest: image boots the user's disk image)")
        if self.image is not None:
            from xpipe.capture.userimage import check_image

            check_image(self.image, fail)
        workloads = WORKLOADS.get(self.guest)
        if not self.domains:
            fail("domains", "no domains to capture")
        seen = set()
        for i, d in enumerate(self.domains):
            at = f"domains[{i}]"
            if not _ID.match(d.id):
                fail(f"{at}.id", f"domain id {d.id!r} must match [A-Za-z0-9_.-]+")
            if d.id in seen:
                fail(f"{at}.id", f"domain id {d.id!r} appears twice")
            seen.add(d.id)
            if d.release is not None and (self.guest != "server" or d.release not in releases):
                fail(f"{at}.release", (f"domain {d.id}: expected one of {', '.join(releases)}" if self.guest == "server"
                                       else f"domain {d.id}: only server guests have a release per domain")
                     + f", got {d.release!r}")
            if self.guest == "image":
                if d.workload != IMAGE_NO_WORKLOAD and not self.image.agent:
                    fail(f"{at}.workload", f"domain {d.id}: a workload command needs the in-guest agent "
                                           f"(image.agent: true); without it use workload: {IMAGE_NO_WORKLOAD}")
                if "\n" in d.workload or not d.workload.strip():
                    fail(f"{at}.workload", f"domain {d.id}: expected a one-line shell command")
            elif d.workload not in workloads:
                fail(f"{at}.workload", f"domain {d.id}: unknown {self.guest} workload {d.workload!r}; "
                                       f"expected one of {', '.join(sorted(workloads))}")
            # RAM past the PC's PCI hole is read where QEMU maps it, above 4 GiB (xpipe.capture.guest).
            if (isinstance(d.memory_mib, bool) or not isinstance(d.memory_mib, int)
                    or not MIN_MEMORY_MIB <= d.memory_mib <= MAX_MEMORY_MIB):
                fail(f"{at}.memory_mib", f"domain {d.id}: memory {d.memory_mib!r} MiB; expected {MIN_MEMORY_MIB} "
                                         f"to {MAX_MEMORY_MIB} MiB")
        if not self.times_s:
            fail("times_s", "expected at least one snapshot time")
        for i, t in enumerate(self.times_s):
            if not math.isfinite(t) or t <= 0 or (i and t <= self.times_s[i - 1]):
                after = f" after {self.times_s[i - 1]}" if i else ""
                fail(f"times_s[{i}]", f"snapshot times must be positive and strictly increasing, got {t}{after}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            fail("batch_size", f"batch size must be at least 1, got {self.batch_size!r}")
        if not (math.isfinite(self.boot_timeout_s) and self.boot_timeout_s > 0):
            fail("boot_timeout_s", f"expected a positive number of seconds, got {self.boot_timeout_s}")
        if self.ksm is not None:
            for key in ("pages_to_scan", "sleep_millisecs"):
                v = self.ksm.get(key)
                if isinstance(v, bool) or not isinstance(v, int) or v < (1 if key == "pages_to_scan" else 0):
                    fail(f"ksm.{key}", f"expected a whole number{' >= 1' if key == 'pages_to_scan' else ' >= 0'}, "
                                       f"got {v!r}")
            unknown = sorted(set(self.ksm) - {"pages_to_scan", "sleep_millisecs", "settle", "settle_timeout_s"})
            if unknown:
                fail(f"ksm.{unknown[0]}", "unknown key (known: pages_to_scan, sleep_millisecs, settle)")
        if self.ksm is not None and self.snapshot_format == "kdump-zlib":
            fail("ksm", "expected snapshot_format pages or delta: KSM is sampled while the guests' "
                        "memory is hashed, and kdump-zlib snapshots keep QEMU's dump instead")
        if self.snapshot_format not in SNAPSHOT_FORMATS:
            fail("snapshot_format", f"unknown snapshot format {self.snapshot_format!r}; expected one of "
                                    f"{', '.join(SNAPSHOT_FORMATS)}")


def interval_times(interval_s: float, count: int, start_s: float | None = None) -> list[float]:
    """``count`` snapshot times ``interval_s`` apart, the first at ``start_s`` (default ``interval_s``)."""
    start = interval_s if start_s is None else start_s
    return [round(start + k * interval_s, 6) for k in range(count)]


def load_spec(path: str | Path) -> CaptureSpec:
    """The capture spec of YAML file ``path``, checked whole (the schema, then validate);
    any fault is one SpecError line naming the file and the key."""
    # Lazy: the YAML reader and jsonschema are needed only when a spec is read.
    import yaml

    from xpipe.configcheck import validate_config
    from xpipe.readers.manifest import _load_yaml  # refuses duplicate keys; bad text is one line

    path = Path(path)
    if not path.is_file():
        raise SpecError(path, None, "capture spec file not found" if not path.exists() else "expected a file")
    raw = _load_yaml(path)
    try:
        validate_config(raw, yaml.safe_load(SCHEMA.read_text()), str(path))
    except InputError as e:
        raise SpecError(e.path, e.where, e.expected) from None
    given = [k for k in ("times_s", "interval_s", "count", "start_s") if k in raw]
    if "times_s" in given and len(given) > 1:
        raise SpecError(path, given[1], "expected times_s, or interval_s and count, not both")
    if not given:
        raise SpecError(path, None, "expected the snapshot times: times_s, or interval_s and count")
    for key in ("interval_s", "count"):
        if "times_s" not in given and key not in given:
            raise SpecError(path, key, f"required key is missing (with {given[0]})")
    if "times_s" in raw:
        times = [float(t) for t in raw["times_s"]]
    else:
        times = interval_times(float(raw["interval_s"]), raw["count"],
                               float(raw["start_s"]) if "start_s" in raw else None)
    image = None
    if "image" in raw:
        im, here = raw["image"], path.parent
        image = ImageSpec(
            path=here / im["path"], format=im["format"], boot=im["boot"],
            kernel=here / im["kernel"] if "kernel" in im else None,
            initrd=here / im["initrd"] if "initrd" in im else None,
            append=" ".join(im["append"].split()), agent=im["agent"])
    spec = CaptureSpec(
        guest=raw["guest"],
        domains=[DomainSpec(d["id"], d.get("workload", IMAGE_NO_WORKLOAD), d["memory_mib"], d.get("release"))
                 for d in raw["domains"]],
        times_s=times,
        batch_size=raw["batch_size"],
        boot_timeout_s=float(raw["boot_timeout_s"]),
        description=" ".join(raw["description"].split()),
        snapshot_format=raw["snapshot_format"],
        release=raw.get("release"),
        image=image,
        ksm=dict(raw["ksm"]) if "ksm" in raw else None,
    )
    spec.validate(str(path))
    return spec


def _preset_names() -> tuple[str, ...]:
    """The spec files of PRESET_DIR by name, ``default`` first, then alphabetically."""
    names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    return tuple(sorted(names, key=lambda n: n != "default"))


#: The named captures: config/captures/NAME.yaml.
PRESETS = _preset_names()


def preset(name: str) -> CaptureSpec:
    """A named capture, from config/captures/NAME.yaml. ``default`` makes data/default;
    ``busybox`` is the fast one tests use."""
    if name not in PRESETS:
        raise CaptureError(f"unknown preset {name!r}; expected one of: {', '.join(PRESETS)} "
                           f"(the spec files in {PRESET_DIR.relative_to(_ROOT)}/)")
    return load_spec(PRESET_DIR / f"{name}.yaml")
