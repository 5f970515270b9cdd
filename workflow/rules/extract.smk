# Stage 2: page types and read content hashes (schemas PAGES, READS, DOMAINS).
# Shared by every experiment of the project.


# One job per domain for both tables: they read the same disk table, and most of a
# job's time is starting it.
rule extract_domain:
    input:
        code=code("extract_domain.py"),
        frames=rules.normalise_domain.output.frames,
        requests=rules.normalise_domain.output.requests,
        disk=domain_disk_table,
    output:
        pages=PAGES.where,
        reads=READS.where,
    # before any replay: the largest mix's replay, the longest job, waits for every domain
    priority: 10
    conda:
        "../envs/xpipe.yaml"
    log:
        log("extract_domain", "capture", "domain"),
    benchmark:
        bench("extract_domain", "capture", "domain")
    script:
        "../scripts/extract_domain.py"


rule tabulate_domains:
    input:
        code=code("tabulate_domains.py"),
        manifest=capture_manifest,
        reads=capture_reads,
        skipped=capture_skipped,
    output:
        domains=DOMAINS.where,
        ksm=KSM_AT_CAPTURE.where,
    params:
        keep_every=capture_keep_every,
    conda:
        "../envs/xpipe.yaml"
    log:
        log("tabulate_domains", "capture"),
    benchmark:
        bench("tabulate_domains", "capture")
    script:
        "../scripts/tabulate_domains.py"
