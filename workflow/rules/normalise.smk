# Stage 1: capture bundles into Parquet (schemas FRAMES, REQUESTS, BLOCKS, DOMAINS).
# Shared by every experiment of the project: a capture is normalised once.


rule make_synthetic:
    input:
        code=code("make_synthetic.py"),
    output:
        manifest="results/synthetic/{capture}/manifest.yaml",
    params:
        spec=synthetic_spec,
    conda:
        "../envs/xpipe.yaml"
    log:
        log("make_synthetic", "capture"),
    benchmark:
        bench("make_synthetic", "capture")
    script:
        "../scripts/make_synthetic.py"


rule normalise_disk:
    input:
        code=code("normalise_disk.py"),
        files=disk_files,
    output:
        blocks=BLOCKS.where,
    params:
        manifest=capture_manifest,
    # threads that hash raw dumps and disk images; jobs run side by side, so one
    # each by default (more for a few large dumps: --set-threads normalise_disk=2)
    threads: 1
    # before any replay: the largest mix's replay, the longest job, waits for every domain
    priority: 10
    conda:
        "../envs/xpipe.yaml"
    log:
        log("normalise_disk", "capture", "disk"),
    benchmark:
        bench("normalise_disk", "capture", "disk")
    script:
        "../scripts/normalise_disk.py"


# Stage 1 and stage 2 of one domain in one job: most of a job's time is starting it, and
# stage 2 takes its frames and requests from memory (both stages' tables are written).
rule normalise_domain:
    input:
        code=code("normalise_domain.py"),
        files=domain_files,
        disk=domain_disk_table,  # its row count is the disk size the reads must stay inside
    output:
        frames=FRAMES.where,
        requests=REQUESTS.where,
        skipped=SKIPPED.where,
        pages=PAGES.where,
        reads=READS.where,
    params:
        manifest=capture_manifest,
        lenient=capture_lenient,
        keep_every=capture_keep_every,
    # threads that hash raw dumps and disk images; jobs run side by side, so one
    # each by default (more for a few large dumps: --set-threads normalise_domain=2)
    threads: 1
    # before any replay: the largest mix's replay, the longest job, waits for every domain
    priority: 10
    conda:
        "../envs/xpipe.yaml"
    log:
        log("normalise_domain", "capture", "domain"),
    benchmark:
        bench("normalise_domain", "capture", "domain")
    script:
        "../scripts/normalise_domain.py"
