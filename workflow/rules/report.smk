# Stage 4: the experiment's results database, figures and tables.


rule build_database:
    input:
        code=code("build_database.py"),
        summary=run_tables(SUMMARY),
        timeline=run_tables(TIMELINE),
        types=run_tables(TYPES),
        prefixes=run_tables(PREFIXES),
        domains=[DOMAINS.path(capture=c) for c in X.captures],
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


rule draw_figure:
    input:
        code=code("draw_figure.py"),
        db=rules.build_database.output.db,
        sql=SRC / "workflow/sql/figures/{figure}.sql",
    output:
        png=report(
            X.path("figure"),
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
        svg=X.path("figure_svg"),
    params:
        # its caption, workflow/report/figures/{figure}.rst (figure.rst renders it)
        caption=figure_caption,
    conda:
        "../envs/xpipe.yaml"
    log:
        X.path("log", job="draw_figure/{figure}"),
    benchmark:
        X.path("benchmark", job="draw_figure/{figure}")
    script:
        "../scripts/draw_figure.py"


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
