# Stage 3: replay each mix under every run of the sweep (tables in xpipe.sim.tables).
# With replay_partitions 1 (the default), one job per mix: the mix's pages are
# loaded once and the oracle, which every summary is measured against, runs first.
# With K > 1, K jobs per mix, each replaying only the frames whose content hash
# is its own modulo K (xpipe.sim.partition), and one job that adds their shares
# up into the same four tables. The experiment's own folder.

PARTITIONS = int(config["replay_partitions"])


# numba compiles the replay's loops once, here, while stage 1 and 2 run: replay jobs
# started side by side in a fresh clone would each compile them (xpipe.sim.warmup).
rule compile_replay_loops:
    input:
        code=code("compile_replay_loops.py"),
    output:
        done="results/compiled/replay-loops.done",
    priority: 20  # first: it takes one core while stage 1 and 2 take the other
    conda:
        "../envs/xpipe.yaml"
    log:
        log("compile_replay_loops"),
    benchmark:
        bench("compile_replay_loops")
    script:
        "../scripts/compile_replay_loops.py"


# a partition's share of every run of a mix: {mix} and {part} left to fill
PART_FILES = {t.name: t.path(experiment=X.name, partitions=PARTITIONS) for t in PARTS}


if PARTITIONS == 1:

    rule replay_mix:
        input:
            code=code("replay_mix.py"),
            loops=rules.compile_replay_loops.output.done,
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
        # the largest mix first (in (0, 1): below stage 1 and 2, whose jobs come first)
        priority: mix_priority
        conda:
            "../envs/xpipe.yaml"
        log:
            X.path("log", job="replay_mix/{mix}"),
        benchmark:
            X.path("benchmark", job="replay_mix/{mix}")
        script:
            "../scripts/replay_mix.py"

else:

    rule split_pages:
        input:
            code=code("split_pages.py"),
            pages=PAGES.where,
        output:
            snapshots=SNAPSHOTS.path(partitions=PARTITIONS),
            shares=expand(PAGE_SHARES.path(partitions=PARTITIONS), part=range(PARTITIONS), allow_missing=True),
        conda:
            "../envs/xpipe.yaml"
        log:
            log("split_pages", "capture", "domain"),
        benchmark:
            bench("split_pages", "capture", "domain")
        script:
            "../scripts/split_pages.py"

    rule replay_partition:
        input:
            code=code("replay_partition.py"),
            loops=rules.compile_replay_loops.output.done,
            snapshots=mix_tables(SNAPSHOTS, partitions=PARTITIONS),
            shares=mix_tables(PAGE_SHARES, partitions=PARTITIONS),
            reads=mix_tables(READS),
        output:
            timeline=temp(PART_FILES["timeline"]),
            types=temp(PART_FILES["types"]),
            prefixes=temp(PART_FILES["prefixes"]),
        wildcard_constraints:
            part=r"\d+",
        params:
            runs=RUNS,
            partitions=PARTITIONS,
            domains_per_host=config["domains_per_host"],
        priority: mix_priority
        conda:
            "../envs/xpipe.yaml"
        log:
            X.path("log", job="replay_partition/{mix}/{part}"),
        benchmark:
            X.path("benchmark", job="replay_partition/{mix}/{part}")
        script:
            "../scripts/replay_partition.py"

    rule replay_merge:
        input:
            code=code("replay_merge.py"),
            timeline=expand(PART_FILES["timeline"], part=range(PARTITIONS), allow_missing=True),
            types=expand(PART_FILES["types"], part=range(PARTITIONS), allow_missing=True),
            prefixes=expand(PART_FILES["prefixes"], part=range(PARTITIONS), allow_missing=True),
        output:
            summary=SUMMARY.path(experiment=X.name),
            timeline=TIMELINE.path(experiment=X.name),
            types=TYPES.path(experiment=X.name),
            prefixes=PREFIXES.path(experiment=X.name),
        params:
            runs=RUNS,
            partitions=PARTITIONS,
            capture=mix_capture,
            domains=lambda wildcards: len(X.mix_domains(wildcards.mix)),
            domains_per_host=config["domains_per_host"],
            host_mib=config["sweep"]["host_mib"],
            synthetic=mix_synthetic,
        conda:
            "../envs/xpipe.yaml"
        log:
            X.path("log", job="replay_merge/{mix}"),
        benchmark:
            X.path("benchmark", job="replay_merge/{mix}")
        script:
            "../scripts/replay_merge.py"
