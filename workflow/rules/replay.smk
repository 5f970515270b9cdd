# Stage 3: replay each mix under every run of the sweep (schemas TIMELINE,
# TYPES, CAPACITY, SUMMARY). One job per mix: the mix's pages are loaded once
# and the oracle, which every summary is measured against, runs first.


rule replay_mix:
    input:
        code=CODE["replay"] + CODE["summarise"],
        pages=mix_pages,
        reads=mix_reads,
    output:
        timeline=expand("results/replay/{{mix}}/{run}/timeline.parquet", run=run_ids()),
        types=expand("results/replay/{{mix}}/{run}/types.parquet", run=run_ids()),
        capacity=expand("results/replay/{{mix}}/{run}/capacity.parquet", run=run_ids()),
        summary=expand("results/replay/{{mix}}/{run}/summary.parquet", run=run_ids()),
    params:
        runs=run_ids(),
        capacity=config["capacity"],
        host_mib=host_mib(),
        synthetic=mix_synthetic,
    conda:
        "../envs/xpipe.yaml"
    log:
        "results/logs/replay_mix/{mix}.log",
    benchmark:
        "results/benchmarks/replay_mix/{mix}.tsv"
    script:
        "../scripts/replay_mix.py"
