"""The ``server`` guest kind: Debian booted the way a server boots.

Per release (bookworm, trixie) one root file system is built with
``debootstrap --variant=minbase`` from Debian's packages: systemd as init, udev,
cron, the release's own kernel (linux-image-amd64) and every server and load
generator of :data:`xpipe.capture.workloads.SERVER_WORKLOADS`, all disabled; the
guest's kernel command line picks which one runs. The tree is cached by release
and package list, packed with mkfs.ext4 -d like the ``debian`` kind, and the
release's own vmlinuz and initrd are copied out next to the image.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from xpipe.capture.errors import CaptureError
from xpipe.capture.ext4 import pack_ext4
from xpipe.capture.host import cache_dir
from xpipe.capture.rootfs import debootstrap_tree
from xpipe.capture.workloads import (
    COMMON_SH,
    SERVER_AGENT_SH,
    SERVER_OVERLAY_INIT,
    SERVER_SH,
    SERVER_UNITS,
    SERVER_WORKLOADS,
    server_workload_script,
)

log = logging.getLogger("xpipe.capture.servers")  # also when run as __main__

#: Releases a server guest can be built from; the first is the default.
SERVER_RELEASES = ("bookworm", "trixie")
#: Packages on top of minbase, in every release: the boot (systemd, udev, cron, the
#: release's kernel) and the servers with their load generators.
BASE_PACKAGES = ("systemd-sysv", "udev", "linux-image-amd64", "kmod", "procps", "iproute2", "cron")
SERVICE_PACKAGES = (
    "postgresql",
    "redis-server", "redis-tools",
    "nginx", "wrk", "apache2-utils",
    "memcached", "libmemcached-tools",
    "mariadb-server", "sysbench",
)
PACKAGES = BASE_PACKAGES + SERVICE_PACKAGES


#: Kernel options of every server guest (the root disk is attached read-only; see SERVER_OVERLAY_INIT).
SERVER_APPEND = "console=ttyS0 init_on_free=1 panic=1 root=/dev/vda ro rootfstype=ext4 init=/xpipe/overlay-init"
#: Free space left in the image beyond its files (the guest never writes to it).
SLACK_BYTES = 64 << 20


def _digest(*parts: str) -> str:
    from xpipe.capture.rootfs import _digest as digest

    return digest(*parts)


def disk_name(release: str) -> str:
    """The image's name under ``disks`` in the manifest."""
    return f"server-{release}"


def server_append(workload: str) -> str:
    """Kernel command line of a server guest running ``workload``: the workload's units are
    pulled in with ``systemd.wants=``; the xpipe units read ``xpipe.workload=``."""
    wants = "".join(f" systemd.wants={u}" for u in SERVER_WORKLOADS[workload].units)
    return f"{SERVER_APPEND} xpipe.workload={workload}{wants}"


def server_tree(release: str, root: Path | None = None) -> Path:
    """debootstrap tree of ``release``, built once per package list."""
    if release not in SERVER_RELEASES:
        raise CaptureError(f"unknown server release {release!r}; expected one of {', '.join(SERVER_RELEASES)}")
    root = root or cache_dir()
    return debootstrap_tree(root / f"server-debootstrap-{release}-{_digest(release, *PACKAGES)}", release,
                            PACKAGES, "the server guest image")


def _guest_files() -> dict[str, tuple[str, int]]:
    """Files xpipe adds to the tree: path -> (text, mode)."""
    files = {
        "xpipe/common.sh": (COMMON_SH, 0o644),
        "xpipe/server": (SERVER_SH, 0o755),
        "xpipe/agent": (SERVER_AGENT_SH, 0o755),
        "xpipe/overlay-init": (SERVER_OVERLAY_INIT, 0o755),
        "etc/hostname": ("server\n", 0o644),
    }
    for name in SERVER_WORKLOADS:
        files[f"xpipe/workloads/{name}"] = (server_workload_script(name), 0o644)
    for unit, text in SERVER_UNITS.items():
        files[f"etc/systemd/system/{unit}"] = (text, 0o644)
    return files


def _install(tree: Path) -> None:
    """Put xpipe's scripts and units into ``tree``; disable every workload service (the kernel
    command line starts the one a guest runs) and the serial getty (it would hide the console)."""
    xdir = tree / "xpipe"
    if xdir.exists():
        shutil.rmtree(xdir)
    for sub in ("rw", "lower", "workloads"):
        (xdir / sub).mkdir(parents=True)
    for rel, (text, mode) in _guest_files().items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    etc = tree / "etc/systemd/system"
    services = {u for w in SERVER_WORKLOADS.values() for u in w.units}
    for wants in etc.glob("*.wants"):
        for link in wants.iterdir():
            if link.name in services or link.name.startswith("xpipe-"):
                link.unlink()
    mu = etc / "multi-user.target.wants"
    mu.mkdir(exist_ok=True)
    for unit in SERVER_UNITS:
        (mu / unit).symlink_to(f"/etc/systemd/system/{unit}")
    getty = etc / "serial-getty@ttyS0.service"
    getty.unlink(missing_ok=True)
    getty.symlink_to("/dev/null")
    # As systemd-update-done leaves them after a first boot: /etc and /var are up to date with
    # /usr, so every boot is a normal one (no ldconfig, catalog or sysusers rebuild first).
    usr_ns = (tree / "usr").stat().st_mtime_ns
    for d in ("etc", "var"):
        done = tree / d / ".updated"
        done.write_text("# This file was created by systemd-update-done. Its only\n"
                        "# purpose is to hold a timestamp of the time this directory\n"
                        "# was updated. See man:systemd-update-done.service(8).\n"
                        f"TIMESTAMP_NSEC={usr_ns}\n")
        os.utime(done, ns=(usr_ns, usr_ns))


def _du_bytes(tree: Path) -> int:
    from xpipe.capture.rootfs import _du_bytes as du

    return du(tree)


@dataclass(frozen=True)
class ServerImage:
    """What a server guest of one release boots from: the release's own kernel and initrd
    (copied out of its tree) and the root disk image."""

    release: str
    disk_name: str
    kernel: Path
    initrd: Path
    root_disk: Path
    kernel_version: str

    @property
    def os(self) -> str:
        """The manifest's informational ``os`` of a domain booted from this image."""
        return f"debian {self.release}, linux {self.kernel_version}"

    def append(self, workload: str) -> str:
        return server_append(workload)


def server_image(release: str, root: Path | None = None) -> ServerImage:
    """The cached server image of ``release`` (built if missing: debootstrap once per package
    list, then xpipe's files and mkfs.ext4 -d whenever they change)."""
    from xpipe.capture.rootfs import ROOT_HASH_SEED, ROOT_UUID

    root = root or cache_dir()
    # The files xpipe adds and how it adds them: editing either repacks the image.
    files = "".join(f"{k}\0{m}\0{t}\0" for k, (t, m) in sorted(_guest_files().items()))
    files += inspect.getsource(_install)
    stem = f"server-{release}-{_digest(release, *PACKAGES, files, 'ext4 -b 4096')}"
    image = root / f"{stem}.img"
    kernel, initrd = root / f"{stem}.vmlinuz", root / f"{stem}.initrd"
    version_file = root / f"{stem}.version"
    if not (image.exists() and kernel.exists() and initrd.exists() and version_file.exists()):
        tree = server_tree(release, root)
        kernels = sorted((tree / "boot").glob("vmlinuz-*"))
        if len(kernels) != 1:
            raise CaptureError(f"{tree}/boot: expected one vmlinuz-*, found {[k.name for k in kernels]}")
        version = kernels[0].name[len("vmlinuz-"):]
        if not (tree / "boot" / f"initrd.img-{version}").is_file():
            raise CaptureError(f"{tree}/boot: no initrd.img-{version}")
        _install(tree)
        size_mib = (int(_du_bytes(tree) * 1.25) + SLACK_BYTES) // (1 << 20) + 1
        tmp = image.with_suffix(".tmp")
        t0 = time.monotonic()
        log.info("packing %s (%d MiB) with mkfs.ext4 -d", image.name, size_mib)
        pack_ext4(tree, tmp, size_mib, ROOT_UUID, ROOT_HASH_SEED, label="xpipe-root")
        log.info("packed in %.0f s", time.monotonic() - t0)
        shutil.copyfile(kernels[0], kernel)
        shutil.copyfile(tree / "boot" / f"initrd.img-{version}", initrd)
        version_file.write_text(version + "\n")
        tmp.rename(image)
        for stale in root.glob(f"server-{release}-*"):  # older scripts' images: 1.5 GB each
            if stale.is_file() and stale.name.split(".")[0] != stem:
                stale.unlink()
    return ServerImage(release, disk_name(release), kernel, initrd, image, version_file.read_text().strip())


# -- capture ---------------------------------------------------------------------------------


def domain_release(spec, d) -> str:
    """The release domain ``d`` of server spec ``spec`` boots: its own, else the spec's, else the first."""
    return d.release or spec.release or SERVER_RELEASES[0]


def server_images(spec) -> tuple[dict[str, ServerImage], str]:
    """Each domain's image (its release's), and what the manifest's description says of them;
    xpipe.capture.capture.run_capture boots the guests."""
    releases = list(dict.fromkeys(domain_release(spec, d) for d in spec.domains))
    images = {r: server_image(r) for r in releases}
    kernels = ", ".join(f"{r}: {images[r].kernel_version}" for r in releases)
    return ({d.id: images[domain_release(spec, d)] for d in spec.domains},
            f"Server guests (systemd as init), each release booting its own kernel ({kernels})")


def main(argv: list[str] | None = None) -> int:
    """``python -m xpipe.capture.servers capture --spec FILE -o DIR`` or ``... build RELEASE``."""
    from xpipe.capture.commands import _run

    p = argparse.ArgumentParser(prog="python -m xpipe.capture.servers",
                                description="Build server guest images; capture server specs.")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build (or find in the cache) the image of each release given")
    b.add_argument("releases", nargs="+", choices=SERVER_RELEASES)
    c = sub.add_parser("capture", help="capture a server spec file into a bundle folder")
    c.add_argument("--spec", type=Path, required=True)
    c.add_argument("-o", "--output", type=Path, required=True)
    c.add_argument("--no-gzip", action="store_true")
    for q in (b, c):
        q.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)

    def build(a: argparse.Namespace) -> int:
        for r in a.releases:
            im = server_image(r)
            print(f"{r}: {im.root_disk} (linux {im.kernel_version})")
        return 0

    def capture(a: argparse.Namespace) -> int:
        from xpipe.capture.capture import run_capture
        from xpipe.capture.spec import load_spec

        print(run_capture(load_spec(a.spec), a.output, compress=not a.no_gzip, name=a.spec.stem))
        return 0

    return _run(build if args.cmd == "build" else capture, args)


if __name__ == "__main__":
    raise SystemExit(main())
