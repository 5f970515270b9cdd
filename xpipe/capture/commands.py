"""Command-line entry points: `capture` and `validate-ksm` (added to the xpipe CLI)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from xpipe.capture.errors import CaptureError
from xpipe.capture.spec import PRESETS, SNAPSHOT_FORMATS, DomainSpec, interval_times, load_spec, preset

log = logging.getLogger(__name__)


@contextmanager
def _interruptible() -> Iterator[None]:
    """Turn SIGINT/SIGTERM/SIGHUP into KeyboardInterrupt so every `finally` (QEMU, KSM settings) runs."""

    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # SIGINT too: a capture started from a script in the background has SIGINT ignored.
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _setup_logging(verbose: bool) -> None:
    """Progress lines of xpipe.capture go to stderr whatever the caller configured for logging."""
    logger = logging.getLogger("xpipe.capture")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False


def _run(fn, args: argparse.Namespace) -> int:
    _setup_logging(getattr(args, "verbose", False))
    try:
        with _interruptible():
            return fn(args)
    except (CaptureError, ValueError, OSError) as e:  # InputError is a ValueError too
        log.error("error: %s", e)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C itself carries no name
        log.error("interrupted by %s; all guests stopped%s", e.args[0] if e.args else "SIGINT",
                  " and host settings restored" if fn is _validate_ksm else "")
        return 130


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seconds, got {text!r}") from None


def _domain(text: str) -> tuple[str, str]:
    ident, sep, workload = text.partition(":")
    if not sep or not ident or not workload:
        raise argparse.ArgumentTypeError(f"expected ID:WORKLOAD, got {text!r}")
    return ident, workload


def add_capture_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "capture",
        help="boot QEMU/TCG guests and record a capture bundle (memory hashes, kpageflags, disk reads)",
        description="Boot guests under QEMU/TCG, snapshot their memory at fixed guest times and write "
        "a capture bundle (docs/capture-bundle.md). Run again into the same folder, it keeps the "
        "batches of guests already recorded there. Needs scripts/install-capture-deps.sh.",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="bundle folder to write")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--preset",
        choices=PRESETS,
        default="default",
        help="a spec file of config/captures/ by name; default: the shipped Debian data; busybox: small "
        "fast guests (default: %(default)s)",
    )
    which.add_argument("--spec", type=Path, metavar="FILE",
                       help="a capture spec file (YAML, as config/captures/*.yaml; docs/capture.md)")
    times = p.add_mutually_exclusive_group()
    times.add_argument("--times", type=_floats, help="snapshot times in guest seconds, e.g. 10,20,30")
    times.add_argument("--interval", type=float, metavar="SECONDS",
                       help="seconds between snapshots, the first after one interval (with --count)")
    p.add_argument("--count", type=int, help="how many snapshots, --interval apart")
    p.add_argument("--snapshot-format", choices=SNAPSHOT_FORMATS,
                   help="pages, delta (later snapshots as the frames that changed) or kdump-zlib")
    p.add_argument(
        "--domain",
        type=_domain,
        action="append",
        metavar="ID:WORKLOAD",
        help="capture these domains instead of the preset's (repeatable); for `guest: image` specs "
        "WORKLOAD is the command the guest agent runs, or none",
    )
    p.add_argument("--memory-mib", type=int, help="guest memory of every domain")
    p.add_argument("--batch-size", type=int, help="guests booted at once")
    p.add_argument("--boot-timeout", type=float, help="seconds a guest may take to boot")
    p.add_argument("--no-gzip", action="store_true", help="write compact files uncompressed")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=lambda a: _run(_capture, a))
    return p


def _capture(args: argparse.Namespace) -> int:
    from xpipe.capture.capture import run_capture

    if (args.interval is None) != (args.count is None):
        raise CaptureError("--interval and --count go together")
    spec = load_spec(args.spec) if args.spec else preset(args.preset)
    mem = args.memory_mib or (spec.domains[0].memory_mib if spec.domains else 256)
    if args.domain:
        spec.domains = [DomainSpec(i, w, mem) for i, w in args.domain]
    elif args.memory_mib:
        spec.domains = [replace(d, memory_mib=mem) for d in spec.domains]
    if args.times:
        spec.times_s = args.times
    if args.interval is not None:
        spec.times_s = interval_times(args.interval, args.count)
    if args.snapshot_format:
        spec.snapshot_format = args.snapshot_format
    if args.batch_size:
        spec.batch_size = args.batch_size
    if args.boot_timeout:
        spec.boot_timeout_s = args.boot_timeout
    path = run_capture(spec, args.output, compress=not args.no_gzip,
                       name=args.spec.stem if args.spec else args.preset)
    print(path)
    return 0


def add_validate_ksm_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "validate-ksm",
        help="compare xpipe's sharing prediction with the host kernel's KSM on real guests",
        description="Boot guests, let the host's KSM merge their memory (THP off), and compare "
        "KSM's pages_sharing with xpipe's prediction from their memory snapshots. --guest busybox "
        "(the default): busybox guests, once KSM has settled. --guest debian: Debian server guests "
        "(systemd, real services under load, a capture spec's guests) captured with KSM running, "
        "compared at every snapshot once KSM has settled on the paused guests; results in "
        "--output. Needs root; all KSM/THP settings are restored afterwards.",
    )
    p.add_argument("--guest", choices=("busybox", "debian"), default="busybox",
                   help="which guests (default %(default)s)")
    p.add_argument("--spec", type=Path, default=None,
                   help="--guest debian: the server capture spec to run (default "
                        "config/captures/servers-small.yaml)")
    p.add_argument("-o", "--output", type=Path, default=Path("results/validation/ksm-debian"),
                   help="--guest debian: folder for the bundle, table and figure (default %(default)s)")
    p.add_argument("--guests", type=int, default=3, help="busybox guests to boot (at least 3; default %(default)s)")
    p.add_argument("--memory-mib", type=int, default=256, help="memory per busybox guest (default %(default)s)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="largest accepted |1 - KSM/predicted| (default 0.10 for busybox, 0.05 for debian)",
    )
    p.add_argument(
        "--settle-timeout",
        type=float,
        default=240.0,
        help="seconds to wait for pages_sharing to settle (default %(default)s)",
    )
    p.add_argument("--boot-timeout", type=float, default=120.0)
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=lambda a: _run(_validate_ksm, a))
    return p


def _validate_ksm(args: argparse.Namespace) -> int:
    from xpipe.capture.ksm import validate_ksm

    if args.guest == "debian":
        return _validate_ksm_debian(args)
    if args.tolerance is None:
        args.tolerance = 0.10
    if args.guests < 3:
        raise CaptureError("--guests must be at least 3")
    result = validate_ksm(args.guests, args.memory_mib, args.settle_timeout, args.boot_timeout)
    print(f"KSM pages_sharing:            {result.ksm_pages_sharing}")
    print(f"xpipe predicted pages saved:  {result.predicted}")
    print(f"ratio KSM/predicted:          {result.ratio:.4f}")
    print(f"host-backed guest pages:      {result.present} ({result.zero} of them zero)")
    print(f"distinct contents:            {result.distinct}")
    print(f"contents with 2+ copies:      {result.duplicated} (KSM pages_shared {result.ksm_pages_shared})")
    extra = result.predicted_all_mergeable
    print(
        f"over all of QEMU's mergeable memory (guest RAM + firmware/ROM/ACPI blocks): predicted {extra}, "
        f"ratio {result.ksm_pages_sharing / extra if extra else float('nan'):.4f}"
    )
    if abs(1 - result.ratio) > args.tolerance:
        print(f"FAIL: ratio outside 1 +/- {args.tolerance}")
        return 1
    print(f"OK: within 1 +/- {args.tolerance}")
    return 0


def _validate_ksm_debian(args: argparse.Namespace) -> int:
    """Capture the spec's server guests with KSM running and settling at every snapshot, then
    compare KSM's pages_sharing with the prediction over all mergeable memory, per snapshot."""
    import math
    import shutil

    from xpipe.capture.capture import run_capture
    from xpipe.capture.ksm import KSM_SETTINGS
    from xpipe.capture.spec import PRESET_DIR
    from xpipe.normalise import ksm_at_capture_table
    from xpipe.readers.manifest import load_manifest

    tolerance = 0.05 if args.tolerance is None else args.tolerance
    for flag, given, default in (("--guests", args.guests, 3), ("--memory-mib", args.memory_mib, 256),
                                 ("--boot-timeout", args.boot_timeout, 120.0)):
        if given != default:
            raise CaptureError(f"{flag} is for --guest busybox; --guest debian takes its guests, memory and "
                               "boot timeout from the spec (--spec)")
    spec_path = args.spec or PRESET_DIR / "servers-small.yaml"
    spec = load_spec(spec_path)
    if spec.guest != "server":
        raise CaptureError(f"{spec_path}: --guest debian runs server guests (guest: server), not {spec.guest}")
    rate = {k: int(spec.ksm[k]) for k in KSM_SETTINGS} if spec.ksm else {"pages_to_scan": 1000,
                                                                           "sleep_millisecs": 20}
    spec = replace(spec, ksm={**rate, "settle": True, "settle_timeout_s": args.settle_timeout},
                   snapshot_format="pages" if spec.snapshot_format == "kdump-zlib" else spec.snapshot_format)
    out = args.output
    bundle = out / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)  # KSM is measured afresh: no batch of an earlier run is kept
    table = ksm_at_capture_table("validate-ksm", load_manifest(run_capture(spec, bundle, name="validate-ksm")))
    table = table.with_columns(ratio=table["ksm_pages_sharing"] / table["predicted_sharing_all_mergeable"])
    table.write_csv(out / "ksm.csv")
    expected = len(spec.times_s) * -(-len(spec.domains) // spec.batch_size)
    if len(table) != expected:
        raise CaptureError(f"{bundle}: {len(table)} KSM records, expected {expected} (snapshots x batches)")
    worst = 0.0
    print(f"{'time_s':>7} {'guests':<40} {'KSM pages_sharing':>17} {'predicted':>10} {'ratio':>7}")
    for r in table.iter_rows(named=True):
        worst = max(worst, abs(1 - r["ratio"]) if math.isfinite(r["ratio"]) else math.inf)  # 0/0 fails
        print(f"{r['time_s']:>7.0f} {r['guests']:<40} {r['ksm_pages_sharing']:>17} "
              f"{r['predicted_sharing_all_mergeable']:>10} {r['ratio']:>7.4f}")
    figure = out / "ksm.png"
    _ksm_figure(table, figure)
    ok = worst <= tolerance
    print(f"{'OK' if ok else 'FAIL'}: largest |1 - KSM/predicted| {worst:.4f} over {len(table)} snapshots "
          f"({'within' if ok else 'outside'} {tolerance}); table {out / 'ksm.csv'}")
    print(f"figure: {figure}")
    return 0 if ok else 1


def _ksm_figure(table, path: Path) -> None:
    """The report's ksm_at_capture figure, through the report's own query of ``table``."""
    import duckdb

    from xpipe.report.db import VIEWS
    from xpipe.report.figures import draw

    root = Path(__file__).resolve().parents[2]
    con = duckdb.connect()
    con.sql(VIEWS["mib"][1])
    con.register("ksm_at_capture", table.drop("ratio").to_arrow())
    con.sql("CREATE TABLE domains AS SELECT 'validate-ksm' AS capture, false AS synthetic")
    draw("ksm_at_capture", con.sql((root / "workflow/sql/figures/ksm_at_capture.sql").read_text()).df(), path)
