#!/usr/bin/env bash
# Install what `xpipe capture` and `xpipe validate-ksm` need on Debian/Ubuntu:
# QEMU (TCG), a distribution kernel + initrd in /boot, debootstrap for the
# guest root file system, busybox for the small initramfs guests, mkfs.ext4
# to pack images without mounting, the Python hashing dependencies, and
# graphviz for drawing the workflow's DAG.
# Idempotent: safe to run again; packages already present are left alone.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

PACKAGES=(
    qemu-system-x86     # qemu-system-x86_64, run with -accel tcg
    qemu-utils          # qemu-img: overlays and format checks of a user's own image
    linux-image-amd64   # guest kernel + initrd (/boot/vmlinuz-*, /boot/initrd.img-*)
    initramfs-tools     # builds the initrd for that kernel
    debootstrap         # Debian root file system for the workload guests
    busybox-static      # init + tools of the small initramfs guests
    e2fsprogs           # mkfs.ext4 -d (pack a directory into an image, no mount)
    gzip
    python3-pip
    graphviz            # dot, for `snakemake --dag | dot -Tsvg > dag.svg`
    makedumpfile        # makedumpfile -R: the reference reassembly of flattened kdump files (tests)
    liblzo2-2           # the LZO and snappy libraries QEMU's kdump writer uses, to build
    libsnappy1v5        #   kdump-lzo / kdump-snappy test dumps where this QEMU cannot (tests)
)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "capture system packages already installed"
fi

# The kernel must be readable by the user who runs QEMU (Debian installs it 0600).
for k in /boot/vmlinuz-*; do
    [ -e "$k" ] && $SUDO chmod a+r "$k"
done

echo "capture dependencies ready"
