"""Capture sources (xpipe.sources): what the workflow learns of each kind of capture in the config."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xpipe.errors import InputError
from xpipe.sources import OnDisk, Recorded, Synthetic, capture_source
from xpipe.synthetic import SyntheticSpec, write_synthetic_bundle

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = "data/default/manifest.yaml"
DEFAULT_DOMAINS = ["sqlite-1", "sqlite-2", "web-1", "web-2", "compress-1", "compile-1", "idle-1"]


@pytest.fixture
def in_project(monkeypatch):
    # The workflow runs in the project folder and names the manifest relative to it.
    monkeypatch.chdir(ROOT)


def test_on_disk_real_bundle(in_project):
    s = capture_source("default", {"manifest": DEFAULT})
    assert isinstance(s, OnDisk)
    assert s.manifest_path == DEFAULT and not s.made_by_workflow and not s.synthetic
    assert s.domains() == DEFAULT_DOMAINS
    assert s.disks() == ["bookworm"]
    assert s.domain_disk("web-1") == "bookworm"
    d = "data/default/sqlite-1"
    assert s.domain_files("sqlite-1") == (
        [DEFAULT] + [f"{d}/s{k}.xxh.gz" for k in range(4)] + [f"{d}/s{k}.kpf.gz" for k in range(4)]
        + [f"{d}/reads.log.gz"]
    )
    assert s.disk_files("bookworm") == [DEFAULT, "data/default/disks/bookworm.blk.xxh.gz"]
    assert all(Path(f).is_file() for dom in s.domains() for f in s.domain_files(dom))
    with pytest.raises(KeyError, match="no domain 'nope'"):
        s.domain_files("nope")
    with pytest.raises(KeyError, match="no disk 'nope'"):
        s.disk_files("nope")


def test_on_disk_synthetic_bundle_without_disk_reads(tmp_path):
    (tmp_path / "s0.xxh").write_bytes(bytes(8 * 256))
    (tmp_path / "d.img").write_bytes(bytes(4096))
    manifest = {
        "format": "xpipe-capture/1", "synthetic": True, "disks": {"d": {"image": "d.img"}},
        "domains": [{"id": "a", "workload": "idle", "memory_mib": 1,
                     "snapshots": [{"time_s": 1, "pages": "s0.xxh"}]}],
    }
    path = str(tmp_path / "manifest.yaml")
    Path(path).write_text(yaml.safe_dump(manifest))
    s = capture_source("mine", {"manifest": path})
    assert s.synthetic and not s.made_by_workflow
    assert s.domain_disk("a") is None
    assert s.domain_files("a") == [path, str(tmp_path / "s0.xxh")]
    assert s.disk_files("d") == [path, str(tmp_path / "d.img")]


def test_synthetic_spec_and_answers(tmp_path):
    entry = {"synthetic": {"seed": 3, "memory_mib": 1, "disk_mib": 1, "workloads": ["web", "idle"],
                           "domains_per_workload": [2, 1], "snapshot_times_s": [5, 10]}}
    s = capture_source("syn", entry)
    assert isinstance(s, Synthetic)
    assert s.spec == SyntheticSpec(seed=3, memory_mib=1, disk_mib=1, workloads=("web", "idle"),
                                   domains_per_workload=(2, 1), snapshot_times_s=(5, 10))
    assert s.manifest_path == "results/synthetic/syn/manifest.yaml"
    assert s.made_by_workflow and s.synthetic
    assert s.domains() == ["web-1", "web-2", "idle-1"]
    assert s.disks() == ["image"]
    assert s.domain_disk("idle-1") == "image"
    assert s.domain_files("web-2") == [s.manifest_path] and s.disk_files("image") == [s.manifest_path]
    with pytest.raises(KeyError):
        s.domain_disk("idle-2")
    # What it says before the bundle exists is what the bundle holds once generated.
    written = capture_source("syn", {"manifest": str(write_synthetic_bundle(tmp_path, s.spec))})
    assert written.synthetic
    assert written.domains() == s.domains() and written.disks() == s.disks()
    assert [written.domain_disk(d) for d in s.domains()] == [s.domain_disk(d) for d in s.domains()]


def test_synthetic_defaults():
    s = capture_source("syn", {"synthetic": {}})
    assert s.spec == SyntheticSpec()
    assert s.domains() == ["sqlite-1", "sqlite-2", "web-1", "web-2", "compress-1", "compile-1", "idle-1"]


def test_recorded_busybox_preset():
    s = capture_source("bb", {"record": "busybox"})
    assert isinstance(s, Recorded) and s.preset == "busybox"
    assert s.manifest_path == "results/captures/busybox/manifest.yaml"
    assert s.made_by_workflow and not s.synthetic
    assert s.domains() == ["dup-1", "dup-2"]
    assert s.disks() == ["busybox-data"]
    assert s.domain_disk("dup-2") == "busybox-data"
    assert s.domain_files("dup-1") == [s.manifest_path] and s.disk_files("busybox-data") == [s.manifest_path]
    d = capture_source("deb", {"record": "default"})
    assert d.domains() == DEFAULT_DOMAINS and d.disks() == ["bookworm"]


def test_disk_names_match_the_images_captures_write():
    from xpipe.capture.rootfs import SUITE
    from xpipe.capture.spec import DISK_NAMES

    assert DISK_NAMES["debian"] == SUITE  # the Debian image's disk is named after its suite


def test_import_is_cheap():
    # The workflow imports it to build the DAG: no QEMU capture code, no polars.
    code = ("import sys, xpipe.sources as s; s.capture_source('b', {'record': 'busybox'}); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('xpipe', 'polars')))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=ROOT).stdout.split()
    assert not [m for m in loaded if m.startswith("polars")]
    assert {m for m in loaded if m.startswith("xpipe.capture")} <= {
        "xpipe.capture", "xpipe.capture.errors", "xpipe.capture.spec", "xpipe.capture.workloads"}


@pytest.mark.parametrize("entry, message", [
    ({}, r"config, captures\.x: expected exactly one of manifest, record, synthetic; got \{\}"),
    ({"manifest": DEFAULT, "record": "busybox"},
     r"captures\.x: expected exactly one of .*; got manifest, record"),
    ({"record": "nope"}, r"captures\.x\.record: expected one of the presets default, busybox, busybox-long, kdump, "
                         r"servers, servers-small, got 'nope'"),
    ({"manifest": 3}, r"captures\.x\.manifest: expected a string, got 3"),
    ({"synthetic": {"sed": 1}}, r"captures\.x\.synthetic\.sed: unknown key"),
    ({"synthetic": {"workloads": ["a"], "domains_per_workload": [1, 2]}},
     r"captures\.x\.synthetic: expected as many domains_per_workload as workloads"),
    ({"manifest": "no/such/manifest.yaml"}, r"no/such/manifest\.yaml: capture manifest not found"),
    ({"manifest": DEFAULT, "keep_every": 0}, r"captures\.x\.keep_every: expected a whole number >= 1, got 0"),
    ({"manifest": DEFAULT, "keep_every": True}, r"captures\.x\.keep_every: expected a whole number >= 1, got True"),
    ({"manifest": DEFAULT, "keep_every": 2.5}, r"captures\.x\.keep_every: expected a whole number >= 1, got 2\.5"),
])
def test_bad_entry(in_project, entry, message):
    with pytest.raises(InputError, match=message):
        capture_source("x", entry)


def test_bad_manifest_stops_at_construction(tmp_path):
    (tmp_path / "manifest.yaml").write_text("format: xpipe-capture/0\ndomains: []\n")
    with pytest.raises(InputError, match=r"manifest\.yaml, format: expected 'xpipe-capture/1'"):
        capture_source("x", {"manifest": str(tmp_path / "manifest.yaml")})


def test_a_recorded_server_capture_has_a_disk_per_release():
    """Server guests of two releases read two images: each domain names its own."""
    src = capture_source("srv", {"record": "servers-small"})
    from xpipe.capture.spec import preset

    spec = preset("servers-small")
    releases = {d.id: d.release or spec.release or "bookworm" for d in spec.domains}
    assert src.disks() == sorted({f"server-{r}" for r in releases.values()})
    assert len(src.disks()) == 2
    for d, release in releases.items():
        assert src.domain_disk(d) == f"server-{release}"
