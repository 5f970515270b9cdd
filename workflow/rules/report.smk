# Stage 4: the results database, figures and tables.


rule build_database:
    input:
        code=CODE["database"],
        summary=all_outputs("summary"),
        timeline=all_outputs("timeline"),
        types=all_outputs("types"),
        capacity=all_outputs("capacity"),
        domains=all_domain_tables(),
    output:
        db="results/xpipe.duckdb",
    conda:
        "../envs/xpipe.yaml"
    log:
        "results/logs/build_database.log",
    benchmark:
        "results/benchmarks/build_database.tsv"
    script:
        "../scripts/build_database.py"


rule draw_figure:
    input:
        code=CODE["figures"],
        db=rules.build_database.output.db,
        sql=str(SRC / "workflow/sql/{figure}.sql"),
    output:
        png=report(
            "results/figures/{figure}.png",
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
        svg="results/figures/{figure}.svg",
    conda:
        "../envs/xpipe.yaml"
    log:
        "results/logs/draw_figure/{figure}.log",
    benchmark:
        "results/benchmarks/draw_figure/{figure}.tsv"
    script:
        "../scripts/draw_figure.py"


rule tabulate_summary:
    input:
        code=CODE["tables"],
        db=rules.build_database.output.db,
        sql=str(SRC / "workflow/sql/summary_table.sql"),
    output:
        csv=report("results/tables/summary.csv", caption="../report/summary_table.rst", category="Tables"),
        md="results/tables/summary.md",
    conda:
        "../envs/xpipe.yaml"
    log:
        "results/logs/tabulate_summary.log",
    benchmark:
        "results/benchmarks/tabulate_summary.tsv"
    script:
        "../scripts/tabulate_summary.py"
