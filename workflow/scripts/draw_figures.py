"""Stage 4: every figure from its SQL query, in ``threads`` processes."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from xpipe.io import run_logged
from xpipe.report.db import query
from xpipe.report.figures import draw, drawing_order


def draw_one(figure: str, sql: str, png: str) -> None:
    draw(figure, query(snakemake.input.db, Path(sql).read_text()).to_pandas(), png)


def main():
    by_name = {f: (f, sql, png) for f, sql, png in
               zip(snakemake.params.figures, snakemake.input.sql, snakemake.output.png)}
    jobs = [by_name[f] for f in drawing_order(list(by_name))]
    # forked after the plotting libraries are imported, so each process starts drawing at once
    with ProcessPoolExecutor(snakemake.threads, mp_context=multiprocessing.get_context("fork")) as pool:
        for done in [pool.submit(draw_one, *job) for job in jobs]:
            done.result()


run_logged(snakemake.log[0], main)
