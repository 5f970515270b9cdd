"""The `xpipe` command: what is not a Snakemake target.

    xpipe describe                 what the results hold (tables, views, columns, units)
    xpipe policies                 the sharing policies, their parameters and run ids
    xpipe query "SQL"              run SQL against an experiment's results/NAME/xpipe.duckdb
    xpipe hash DUMP -o PAGES.parquet   page hashes and types of one memory dump
    xpipe inspect FILE...          what each trace or dump is, and whether it is whole
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


def _database(args) -> Path:
    """The database the command reads: --db, else the experiment's under ./results/."""
    from xpipe.experiment import RESULTS

    return Path(args.db or RESULTS["database"].format(experiment=args.experiment))


def _missing_database(db: Path) -> str:
    """Why ``db`` is not there, and how to point at one that is."""
    found = sorted(str(p) for p in Path("results").glob("*/xpipe.duckdb"))
    if found:
        return f"{db} does not exist; databases here: {', '.join(found)} (choose one with --experiment NAME or --db PATH)"
    if not Path("Snakefile").exists():
        return (f"{db} does not exist: run in the project folder, or point at a database with "
                "--db PATH/results/NAME/xpipe.duckdb")
    return f"{db} does not exist yet: run `snakemake --cores 2` (or with --configfile for that experiment) first"


def _describe(args) -> int:
    from xpipe import schemas
    from xpipe.report.db import VIEWS
    from xpipe.sim import tables

    print("Results tables (all page counts are 4 KiB pages; times are guest seconds). Each experiment")
    print("(config file) has its own results/NAME/; the capture tables are shared by all of them.\n")
    print(schemas.describe(tables.TABLES + schemas.TABLES))
    print("Views and macros every experiment's database defines (beside the tables above):")
    for name, (doc, _) in VIEWS.items():
        print(f"    {name:<24} {doc}")
    print()
    db = _database(args)
    if db.exists():
        import duckdb

        from xpipe.report.db import query

        try:
            tables = query(db, "SELECT table_name, table_type FROM information_schema.tables ORDER BY 1")
        except duckdb.Error as e:  # not a DuckDB database, or one this duckdb cannot read
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f"xpipe describe: {db}: {first}", file=sys.stderr)
            return 2
        print(f"{db}:")
        print(tables)
    else:
        print(_missing_database(db))
    return 0


def _policies(args) -> int:
    from xpipe.sim.runs import describe_policies

    print(describe_policies())
    return 0


def _query(args) -> int:
    import duckdb

    from xpipe.report.db import query

    db = _database(args)
    if not db.exists():
        print(f"xpipe query: {_missing_database(db)}", file=sys.stderr)
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


def _inspect(args) -> int:
    from xpipe.inspect import inspect

    bad = 0
    for f in args.files:
        try:
            print(inspect(f, args.format, args.lenient))
        except InputError as e:
            print(f"xpipe inspect: {e}", file=sys.stderr)
            bad += 1
    return 1 if bad else 0


def _synth(args) -> int:
    from xpipe.synthetic import SpecError, SyntheticSpec, write_synthetic_bundle

    given = {"memory_mib": args.memory_mib, "seed": args.seed}
    try:
        spec = SyntheticSpec(**{k: v for k, v in given.items() if v is not None})
    except SpecError as e:  # checked before anything is written
        option = f"--{e.field.replace('_', '-')}" if e.field in given else e.field
        print(f"xpipe synth: {option}: {e.expected}", file=sys.stderr)
        return 2
    print(write_synthetic_bundle(args.out, spec))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xpipe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def database_options(p):
        p.add_argument("--experiment", default="default",  # xpipe.experiment.DEFAULT_EXPERIMENT (not imported: it loads the registry)
                       help="experiment whose results/NAME/xpipe.duckdb to read (default: default, the "
                       "results of config/config.yaml; a --configfile X.yaml run is experiment X)")
        p.add_argument("--db", help="a results database by path (instead of --experiment)")

    d = sub.add_parser("describe", help="what the results hold: tables, views, columns, units")
    database_options(d)
    d.set_defaults(func=_describe)

    pol = sub.add_parser("policies", help="the sharing policies, their parameters (units, defaults), run ids")
    pol.set_defaults(func=_policies)

    q = sub.add_parser("query", help="run SQL against an experiment's results database",
                       description="Run SQL against an experiment's results database (read-only). Tables: "
                       "summary, timeline, types, prefixes, domains; views: headline, shown_runs, per_time, "
                       "summary_every_snapshot, and over the Parquet files frames, requests, pages, reads "
                       "(`xpipe describe` explains each).")
    q.add_argument("sql", help='e.g. "SELECT label, savings FROM headline WHERE mix = \'all\' ORDER BY run_order"')
    database_options(q)
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

    from xpipe.inspect import FORMATS

    i = sub.add_parser("inspect", help="what each trace or dump is and whether it is whole (reads it all)")
    i.add_argument("files", nargs="+", help="memory dumps, compact page-hash files, QEMU read traces")
    i.add_argument("--format", choices=tuple(FORMATS), help="the format, instead of detecting it")
    i.add_argument("--lenient", action="store_true",
                   help="skip bad records of a trace (qemu-blk, fiu), counting them by kind, instead of stopping")
    i.set_defaults(func=_inspect)

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
