"""Tables for people: CSV for tools, Markdown for reading."""

from __future__ import annotations

from pathlib import Path

import polars as pl


def markdown(df: pl.DataFrame) -> str:
    cells = [[("" if v is None else str(v)) for v in row] for row in df.iter_rows()]
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(lines) + "\n"


def write_table(df: pl.DataFrame, csv: str | Path, md: str | Path) -> None:
    Path(csv).parent.mkdir(parents=True, exist_ok=True)
    df.write_csv(csv)
    note = ""
    if "synthetic" in df.columns and df["synthetic"].any():
        note = "**SYNTHETIC DATA**: rows with synthetic = true come from generated, not recorded, captures.\n\n"
    Path(md).write_text(note + markdown(df))
