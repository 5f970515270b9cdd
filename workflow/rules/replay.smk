# Stage 3: replay each mix under every run of the sweep (tables in xpipe.sim.tables).
# One job per mix: the mix's pages are loaded once and the oracle, which every
# summary is measured against, runs first. The experiment's own folder.


rule replay_mix:
    input:
        code=code("replay_mix.py"),
        pages=mix_tables(PAGES),
        reads=mix_tables(READS),
    output:
        summary=SUMMARY.path(experiment=X.name),
        timeline=TIMELINE.path(experiment=X.name),
        types=TYPES.path(experiment=X.name),
        prefixes=PREFIXES.path(experiment=X.name),
    params:
        runs=RUNS,
        capture=mix_capture,
        domains_per_host=config["domains_per_host"],
        host_mib=config["sweep"]["host_mib"],
        synthetic=mix_synthetic,
    conda:
        "../envs/xpipe.yaml"
    log:
        X.path("log", job="replay_mix/{mix}"),
    benchmark:
        X.path("benchmark", job="replay_mix/{mix}")
    script:
        "../scripts/replay_mix.py"
