"""The `xpipe` command: what is not a Snakemake target.

    xpipe describe                 what the results hold (tables, columns, units)
    xpipe query "SQL"              run SQL against results/xpipe.duckdb
    xpipe hash DUMP -o PAGES.parquet   page hashes and types of one memory dump
    xpipe synth OUT                write a SYNTHETIC capture bundle
    xpipe capture ...              record a real capture (QEMU guests)
    xpipe validate-ksm ...         compare predicted sharing with the kernel's KSM
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from xpipe.errors import InputError

DEFAULT_DB = "results/xpipe.duckdb"


def _describe(args) -> int:
    from xpipe.schemas import describe

    print("Results tables (all page counts are 4 KiB pages; times are guest seconds).\n")
    print(describe())
    db = Path(args.db)
    if db.exists():
        from xpipe.report.db import query

        print(f"{db}:")
        print(query(db, "SELECT table_name, table_type FROM information_schema.tables ORDER BY 1"))
    else:
        print(f"{db} does not exist yet: run `snakemake --cores 2` first.")
    return 0


def _query(args) -> int:
    import duckdb

    from xpipe.report.db import query

    db = Path(args.db)
    if not db.exists():
        print(f"xpipe query: {db} does not exist; run `snakemake --cores 2` first", file=sys.stderr)
        return 2
    try:
        df = query(db, args.sql)
    except duckdb.Error as e:
        print(f"xpipe query: {e}", file=sys.stderr)
        return 2
    if args.format == "csv":
        sys.stdout.write(df.write_csv())
    else:
        import polars as pl

        with pl.Config(tbl_rows=args.rows, tbl_cols=-1, tbl_width_chars=200):
            print(df)
    return 0


def _hash(args) -> int:
    from xpipe.dumphash import hash_dump

    rows = hash_dump(args.dump, args.output, kind=args.kind, kpageflags=args.kpageflags,
                     threads=args.threads)
    print(f"{args.output}: {rows} pages", file=sys.stderr)
    return 0


def _synth(args) -> int:
    from xpipe.synthetic import SyntheticSpec, write_synthetic_bundle

    given = {"memory_mib": args.memory_mib, "seed": args.seed}
    spec = SyntheticSpec(**{k: v for k, v in given.items() if v is not None})
    print(write_synthetic_bundle(args.out, spec))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xpipe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("describe", help="what the results hold: tables, columns, units")
    d.add_argument("--db", default=DEFAULT_DB, help=f"results database (default {DEFAULT_DB})")
    d.set_defaults(func=_describe)

    q = sub.add_parser("query", help="run SQL against the results database",
                       description="Run SQL against the results database (read-only). Tables: "
                       "summary, timeline, types, capacity, domains; views over the Parquet "
                       "files: frames, requests, pages, reads.")
    q.add_argument("sql", help='e.g. "SELECT run, savings FROM summary WHERE mix = \'all\'"')
    q.add_argument("--db", default=DEFAULT_DB, help=f"results database (default {DEFAULT_DB})")
    q.add_argument("--format", choices=("table", "csv"), default="table", help="output format")
    q.add_argument("--rows", type=int, default=50, help="rows to print in table format")
    q.set_defaults(func=_query)

    h = sub.add_parser("hash", help="page hashes (and types) of one guest memory dump")
    h.add_argument("dump", help="a QMP pmemsave dump or a dump-guest-memory ELF core")
    h.add_argument("-o", "--output", required=True, help="Parquet file to write")
    h.add_argument("--kind", choices=("auto", "pmemsave", "elf"), default="auto",
                   help="dump format (auto: ELF if it starts with the ELF magic)")
    h.add_argument("--kpageflags", help="the guest's /proc/kpageflags copy, for page types")
    h.add_argument("--threads", type=int, default=0, help="hashing threads (0: one per core)")
    h.set_defaults(func=_hash)

    s = sub.add_parser("synth", help="write a SYNTHETIC capture bundle (for tests and scale runs)")
    s.add_argument("out", help="folder to write the bundle to")
    # unset options take SyntheticSpec's defaults (64 MiB, seed 1)
    s.add_argument("--memory-mib", type=int, help="guest memory per domain, MiB")
    s.add_argument("--seed", type=int, help="generator seed")
    s.set_defaults(func=_synth)

    try:
        from xpipe.capture.commands import add_capture_parser, add_validate_ksm_parser
    except ImportError:  # capture support not installed
        pass
    else:
        add_capture_parser(sub)
        add_validate_ksm_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        print(f"xpipe {args.command}: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an output that cannot be written, a file that cannot be read
        where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
        print(f"xpipe {args.command}: {where + ': ' if where else ''}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"xpipe {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
