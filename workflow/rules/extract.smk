# Stage 2: page types and read content hashes (schemas PAGES, READS).


rule extract_pages:
    input:
        code=CODE["extract"],
        frames=rules.normalise_domain.output.frames,
        disk=domain_disk_table,
    output:
        pages="results/pages/{capture}/{domain}.parquet",
    conda:
        "../envs/xpipe.yaml"
    log:
        "results/logs/extract_pages/{capture}/{domain}.log",
    benchmark:
        "results/benchmarks/extract_pages/{capture}/{domain}.tsv"
    script:
        "../scripts/extract_pages.py"


rule extract_reads:
    input:
        code=CODE["extract"],
        requests=rules.normalise_domain.output.requests,
        disk=domain_disk_table,
    output:
        reads="results/reads/{capture}/{domain}.parquet",
    conda:
        "../envs/xpipe.yaml"
    log:
        "results/logs/extract_reads/{capture}/{domain}.log",
    benchmark:
        "results/benchmarks/extract_reads/{capture}/{domain}.tsv"
    script:
        "../scripts/extract_reads.py"


rule tabulate_domains:
    input:
        code=CODE["normalise"],
        manifest=capture_manifest,
        reads=capture_reads,
    output:
        domains="results/normalised/{capture}/domains.parquet",
    conda:
        "../envs/xpipe.yaml"
    log:
        "results/logs/tabulate_domains/{capture}.log",
    benchmark:
        "results/benchmarks/tabulate_domains/{capture}.tsv"
    script:
        "../scripts/tabulate_domains.py"
