"""Capture spec files (config/captures/*.yaml, workflow/schemas/capture.schema.yaml): the
presets read exactly as they were defined in code, and every bad spec is one line naming
the file and the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from xpipe.capture.commands import add_capture_parser
from xpipe.capture.errors import CaptureError
from xpipe.capture.spec import (
    PRESET_DIR,
    PRESETS,
    CaptureSpec,
    DomainSpec,
    SpecError,
    interval_times,
    load_spec,
    preset,
)
from xpipe.errors import InputError

ROOT = Path(__file__).resolve().parents[1]

BUSYBOX_DOMAINS = [DomainSpec("dup-1", "dup", 256), DomainSpec("dup-2", "dup", 256)]
BUSYBOX_DISK = "2 busybox initramfs guests under QEMU/TCG, 256 MiB each, reading a shared ext4 disk"

#: The presets as xpipe.capture.spec defined them in Python before they became spec files.
TODAY = {
    "default": CaptureSpec(
        guest="debian",
        domains=[DomainSpec(i, w, 256) for i, w in [
            ("sqlite-1", "sqlite"), ("sqlite-2", "sqlite"), ("web-1", "web"), ("web-2", "web"),
            ("compress-1", "compress"), ("compile-1", "compile"), ("idle-1", "idle")]],
        times_s=[40.0, 70.0, 100.0, 130.0],
        batch_size=2,
        boot_timeout_s=240.0,
        description=(
            "7 Debian bookworm guests (debootstrap minbase) under QEMU/TCG, 256 MiB each: "
            "Python+SQLite x2, web server + client x2, compressor (xz, gzip), gcc, idle; "
            "booted two at a time, snapshots at the same guest times"
        ),
        release="bookworm",
    ),
    "busybox": CaptureSpec(
        guest="busybox", domains=BUSYBOX_DOMAINS, times_s=[20.0, 25.0, 30.0], batch_size=2,
        boot_timeout_s=90.0, description=BUSYBOX_DISK,
    ),
    "kdump": CaptureSpec(
        guest="busybox", domains=BUSYBOX_DOMAINS, times_s=[20.0, 25.0, 30.0], batch_size=2,
        boot_timeout_s=90.0, snapshot_format="kdump-zlib",
        description=BUSYBOX_DISK + "; snapshots kept as QEMU's kdump-zlib dumps (dump-guest-memory)",
    ),
}


def test_presets_are_the_spec_files():
    assert PRESETS[0] == "default"
    assert sorted(PRESETS) == sorted(p.stem for p in (ROOT / "config/captures").glob("*.yaml"))
    assert PRESET_DIR == ROOT / "config/captures"
    assert set(TODAY) <= set(PRESETS)


@pytest.mark.parametrize("name", sorted(TODAY))
def test_preset_gives_todays_spec(name):
    spec = preset(name)
    assert spec == TODAY[name]
    assert all(isinstance(t, float) for t in spec.times_s) and isinstance(spec.boot_timeout_s, float)


@pytest.mark.parametrize("name", PRESETS)
def test_every_shipped_spec_file_validates(name):
    spec = load_spec(PRESET_DIR / f"{name}.yaml")
    spec.validate()
    assert spec == preset(name)


def test_the_long_preset():
    """At least 10 snapshots over at least 10 minutes of guest time, stored as deltas."""
    spec = preset("busybox-long")
    assert spec.snapshot_format == "delta"
    assert len(spec.times_s) >= 10 and spec.times_s[-1] - spec.times_s[0] >= 600
    assert spec.times_s == interval_times(60.0, 11) == [60.0 * k for k in range(1, 12)]


def test_interval_and_count(tmp_path):
    path = write(tmp_path, {**BUSYBOX, "times_s": None, "interval_s": 0.1, "count": 3, "start_s": 5})
    assert load_spec(path).times_s == [5.0, 5.1, 5.2]


def test_unknown_preset():
    with pytest.raises(CaptureError, match=r"unknown preset 'nope'; expected one of: default, busybox, .*"
                                           r"\(the spec files in config/captures/\)"):
        preset("nope")


# -- bad spec files: one line each --------------------------------------------


BUSYBOX = yaml.safe_load((ROOT / "config/captures/busybox.yaml").read_text())
DEBIAN = yaml.safe_load((ROOT / "config/captures/default.yaml").read_text())


def write(tmp_path: Path, spec: dict, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({k: v for k, v in spec.items() if v is not None}, sort_keys=False))
    return path


def with_domain(base: dict, **change) -> dict:
    return {**base, "domains": [{**base["domains"][0], **change}, *base["domains"][1:]]}


BAD = [
    # typos: unknown keys with the key probably meant
    ({**BUSYBOX, "batch_sise": 2}, "batch_sise: unknown key; did you mean 'batch_size'?"),
    ({**BUSYBOX, "time_s": [1]}, "time_s: unknown key; did you mean 'times_s'?"),
    (with_domain(BUSYBOX, memory_mb=256), "domains[0].memory_mb: unknown key; did you mean 'memory_mib'?"),
    ({**BUSYBOX, "guest": "debain"}, "guest: 'debain' is not one of ['debian', 'busybox', 'server', 'image']"),
    ({**BUSYBOX, "snapshot_format": "delat"},
     "snapshot_format: 'delat' is not one of ['pages', 'delta', 'kdump-zlib']"),
    # wrong types
    ({**BUSYBOX, "times_s": "20, 25"}, "times_s: '20, 25' is not of type 'array'"),
    ({**BUSYBOX, "times_s": [20, "25"]}, "times_s[1]: '25' is not of type 'number'"),
    ({**BUSYBOX, "batch_size": 1.5}, "batch_size: 1.5 is not of type 'integer'"),
    ({**BUSYBOX, "batch_size": True}, "batch_size: True is not of type 'integer'"),
    (with_domain(BUSYBOX, memory_mib="256"), "domains[0].memory_mib: '256' is not of type 'integer'"),
    ({**BUSYBOX, "domains": {"dup-1": "dup"}}, "domains: {'dup-1': 'dup'} is not of type 'array'"),
    # NaN and infinities
    ({**BUSYBOX, "times_s": [20, float("nan")]}, "times_s[1]: nan is not a finite number"),
    ({**BUSYBOX, "boot_timeout_s": float("inf")}, "boot_timeout_s: inf is not a finite number"),
    ({**BUSYBOX, "times_s": None, "interval_s": float("-inf"), "count": 3},
     "interval_s: -inf is not a finite number"),
    # out of range
    ({**BUSYBOX, "times_s": [-5, 20]}, "times_s[0]: -5 is less than or equal to the minimum of 0"),
    ({**BUSYBOX, "times_s": [0, 20]}, "times_s[0]: 0 is less than or equal to the minimum of 0"),
    ({**BUSYBOX, "batch_size": 0}, "batch_size: 0 is less than the minimum of 1"),
    ({**BUSYBOX, "times_s": None, "interval_s": 60, "count": 0}, "count: 0 is less than the minimum of 1"),
    (with_domain(BUSYBOX, memory_mib=65537), "domains[0].memory_mib: 65537 is greater than the maximum of 65536"),
    (with_domain(BUSYBOX, memory_mib=32), "domains[0].memory_mib: 32 is less than the minimum of 64"),
    ({**BUSYBOX, "times_s": []}, "times_s: [] should be non-empty"),
    # not increasing
    ({**BUSYBOX, "times_s": [20, 30, 25]},
     "times_s[2]: snapshot times must be positive and strictly increasing, got 25.0 after 30.0"),
    ({**BUSYBOX, "times_s": [20, 20]},
     "times_s[1]: snapshot times must be positive and strictly increasing, got 20.0 after 20.0"),
    # times: a list or an interval and a count, not both, not neither
    ({**BUSYBOX, "times_s": None}, "expected the snapshot times: times_s, or interval_s and count"),
    ({**BUSYBOX, "interval_s": 60, "count": 3}, "interval_s: expected times_s, or interval_s and count, not both"),
    ({**BUSYBOX, "times_s": None, "interval_s": 60}, "count: required key is missing (with interval_s)"),
    ({**BUSYBOX, "times_s": None, "count": 3}, "interval_s: required key is missing (with count)"),
    # what the schema cannot know
    (with_domain(BUSYBOX, workload="sqlite"),
     "domains[0].workload: domain dup-1: unknown busybox workload 'sqlite'; expected one of dup, idle"),
    (with_domain(BUSYBOX, id="dup-2"), "domains[1].id: domain id 'dup-2' appears twice"),
    (with_domain(BUSYBOX, id="a b"), "domains[0].id: 'a b' does not match '^[A-Za-z0-9_.-]+$'"),
    ({**DEBIAN, "release": None}, "release: required key is missing"),
    ({**DEBIAN, "release": "trixie"}, "release: expected one of bookworm, got 'trixie'"),
    ({**BUSYBOX, "release": "bookworm"}, "release: expected no release for busybox guests, got 'bookworm'"),
    ({**BUSYBOX, "domains": []}, "domains: [] should be non-empty"),
    ({**BUSYBOX, "domains": None}, "domains: required key is missing"),
]


@pytest.mark.parametrize("spec, message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_spec_is_one_line(tmp_path, spec, message):
    path = write(tmp_path, spec)
    with pytest.raises(SpecError) as e:
        load_spec(path)
    text = str(e.value)
    assert "\n" not in text and len(text) < 400
    assert text.startswith(f"{path}{': ' if message.startswith('expected') else ', '}{message}")
    # the command line prints it (CaptureError), the workflow names the file (InputError)
    assert isinstance(e.value, CaptureError) and isinstance(e.value, InputError)


def test_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("guest: busybox\nguest: debian\n")
    with pytest.raises(InputError, match=re.escape(f"{path}, line 2: expected YAML (duplicate key 'guest')")):
        load_spec(path)
    with pytest.raises(SpecError, match=re.escape(f"{tmp_path / 'none.yaml'}: capture spec file not found")):
        load_spec(tmp_path / "none.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(SpecError, match=r"list\.yaml: \[1\] is not of type 'object'"):
        load_spec(tmp_path / "list.yaml")


def test_validate_names_the_key_for_specs_built_in_code():
    spec = preset("busybox")
    spec.times_s = [10.0, 5.0]
    with pytest.raises(CaptureError, match=re.escape("capture spec, times_s[1]: snapshot times must be "
                                                     "positive and strictly increasing, got 5.0 after 10.0")):
        spec.validate()
    spec = preset("busybox")
    spec.boot_timeout_s = float("nan")
    with pytest.raises(CaptureError, match=r"capture spec, boot_timeout_s: expected a positive number"):
        spec.validate()


# -- the command line ------------------------------------------------------------


def parse(*argv: str):
    import argparse

    parser = argparse.ArgumentParser()
    add_capture_parser(parser.add_subparsers())
    return parser.parse_args(["capture", "-o", "out", *argv])


def test_command_line_takes_a_spec_file_or_a_preset(tmp_path, monkeypatch, capsys):
    from xpipe.capture import capture as capture_module

    got = []
    monkeypatch.setattr(capture_module, "run_capture", lambda spec, out, **kw: got.append(spec) or out)
    path = write(tmp_path, {**BUSYBOX, "description": "mine"})
    assert parse("--spec", str(path)).func(parse("--spec", str(path))) == 0
    assert got[-1].description == "mine"
    args = parse("--preset", "busybox", "--interval", "30", "--count", "12", "--snapshot-format", "delta")
    assert args.func(args) == 0
    assert got[-1].times_s == [30.0 * k for k in range(1, 13)] and got[-1].snapshot_format == "delta"
    args = parse("--interval", "30")
    assert args.func(args) == 2  # --count missing: one error line, no capture
    assert len(got) == 2
    with pytest.raises(SystemExit):
        parse("--spec", str(path), "--preset", "busybox")
