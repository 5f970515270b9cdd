"""`python -m xpipe.capture {capture,validate-ksm} ...` without the rest of the xpipe CLI."""

from __future__ import annotations

import argparse
import sys

from xpipe.capture.commands import add_capture_parser, add_validate_ksm_parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xpipe.capture")
    sub = parser.add_subparsers(dest="command", required=True)
    add_capture_parser(sub)
    add_validate_ksm_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
