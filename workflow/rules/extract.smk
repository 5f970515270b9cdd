# Stage 2: page types and read content hashes (schemas PAGES, READS, DOMAINS).
# Shared by every experiment of the project.


rule extract_pages:
    input:
        code=code("extract_pages.py"),
        frames=rules.normalise_domain.output.frames,
        disk=domain_disk_table,
    output:
        pages=PAGES.where,
    conda:
        "../envs/xpipe.yaml"
    log:
        log("extract_pages", "capture", "domain"),
    benchmark:
        bench("extract_pages", "capture", "domain")
    script:
        "../scripts/extract_pages.py"


rule extract_reads:
    input:
        code=code("extract_reads.py"),
        requests=rules.normalise_domain.output.requests,
        disk=domain_disk_table,
    output:
        reads=READS.where,
    conda:
        "../envs/xpipe.yaml"
    log:
        log("extract_reads", "capture", "domain"),
    benchmark:
        bench("extract_reads", "capture", "domain")
    script:
        "../scripts/extract_reads.py"


rule tabulate_domains:
    input:
        code=code("tabulate_domains.py"),
        manifest=capture_manifest,
        reads=capture_reads,
        skipped=capture_skipped,
    output:
        domains=DOMAINS.where,
    conda:
        "../envs/xpipe.yaml"
    log:
        log("tabulate_domains", "capture"),
    benchmark:
        bench("tabulate_domains", "capture")
    script:
        "../scripts/tabulate_domains.py"
