# Stage 4: the experiment's results database, figures and tables.


rule build_database:
    input:
        code=code("build_database.py"),
        summary=run_tables(SUMMARY),
        timeline=run_tables(TIMELINE),
        types=run_tables(TYPES),
        prefixes=run_tables(PREFIXES),
        domains=[DOMAINS.path(capture=c) for c in X.captures],
        ksm_at_capture=[KSM_AT_CAPTURE.path(capture=c) for c in X.captures],
        # the per-page views name these files; they exist once the mixes are replayed
        per_page=[f for t in PER_PAGE for files in per_page_files(t).values() for f in files],
    output:
        db=X.path("database"),
    params:
        per_page={t.name: per_page_files(t) for t in PER_PAGE},
    conda:
        "../envs/xpipe.yaml"
    log:
        X.path("log", job="build_database"),
    benchmark:
        X.path("benchmark", job="build_database")
    script:
        "../scripts/build_database.py"


# Every figure in one job: the plotting libraries load once, and the figures are drawn
# in `threads` processes (one query file and one caption file per figure).
rule draw_figures:
    input:
        code=code("draw_figures.py"),
        db=rules.build_database.output.db,
        sql=[SRC / f"workflow/sql/figures/{f}.sql" for f in FIGURES],
    output:
        png=[
            report(
                X.path("figure", figure=f),
                caption=f"../report/figures/{f}.rst",
                category="Figures",
                labels={"figure": f},
            )
            for f in FIGURES
        ],
        svg=[X.path("figure_svg", figure=f) for f in FIGURES],
    params:
        figures=FIGURES,
    threads: 2
    conda:
        "../envs/xpipe.yaml"
    log:
        X.path("log", job="draw_figures"),
    benchmark:
        X.path("benchmark", job="draw_figures")
    script:
        "../scripts/draw_figures.py"


rule tabulate_summary:
    input:
        code=code("tabulate_summary.py"),
        db=rules.build_database.output.db,
        sql=SRC / "workflow/sql/summary_table.sql",
    output:
        csv=report(X.path("summary_csv"), caption="../report/summary_table.rst", category="Tables"),
        md=X.path("summary_md"),
    conda:
        "../envs/xpipe.yaml"
    log:
        X.path("log", job="tabulate_summary"),
    benchmark:
        X.path("benchmark", job="tabulate_summary")
    script:
        "../scripts/tabulate_summary.py"
