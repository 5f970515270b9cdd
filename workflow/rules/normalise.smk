# Stage 1: capture bundles into Parquet (schemas FRAMES, REQUESTS, BLOCKS, DOMAINS).


rule make_synthetic:
    input:
        code=CODE["synthetic"],
    output:
        manifest="results/synthetic/{capture}/manifest.yaml",
    params:
        spec=synthetic_params,
    conda:
        "../envs/xpipe.yaml"
    log:
        "results/logs/make_synthetic/{capture}.log",
    benchmark:
        "results/benchmarks/make_synthetic/{capture}.tsv"
    script:
        "../scripts/make_synthetic.py"


rule normalise_disk:
    input:
        code=CODE["normalise"],
        files=disk_files,
    output:
        blocks="results/normalised/{capture}/disks/{disk}.parquet",
    params:
        manifest=capture_manifest,
    # threads that hash raw dumps and disk images; jobs run side by side, so one
    # each by default (more for a few large dumps: --set-threads normalise_disk=2)
    threads: 1
    conda:
        "../envs/xpipe.yaml"
    log:
        "results/logs/normalise_disk/{capture}/{disk}.log",
    benchmark:
        "results/benchmarks/normalise_disk/{capture}/{disk}.tsv"
    script:
        "../scripts/normalise_disk.py"


rule normalise_domain:
    input:
        code=CODE["normalise"],
        files=domain_files,
        disk=domain_disk_table,  # its row count is the disk size the reads must stay inside
    output:
        frames="results/normalised/{capture}/frames/{domain}.parquet",
        requests="results/normalised/{capture}/requests/{domain}.parquet",
    params:
        manifest=capture_manifest,
    # threads that hash raw dumps and disk images; jobs run side by side, so one
    # each by default (more for a few large dumps: --set-threads normalise_domain=2)
    threads: 1
    conda:
        "../envs/xpipe.yaml"
    log:
        "results/logs/normalise_domain/{capture}/{domain}.log",
    benchmark:
        "results/benchmarks/normalise_domain/{capture}/{domain}.tsv"
    script:
        "../scripts/normalise_domain.py"

