# Stage 2: page types and read content hashes (schemas PAGES, READS, DOMAINS).
# Shared by every experiment of the project.


# The per-domain tables (PAGES, READS) are written by rule normalise_domain with stage 1's.


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
