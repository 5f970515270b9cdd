# A real capture: QEMU guests of an `xpipe capture` preset, recorded into a
# bundle (docs/capture.md). It takes minutes, so it never runs by default: a
# capture of the config with `record: PRESET` makes it a dependency, or ask
# for it by name, e.g. `snakemake --cores 2 results/captures/busybox/manifest.yaml`.
# The manifest is written last, so an interrupted capture leaves none.


rule capture:
    input:
        spec=SRC / "config/captures/{preset}.yaml",  # the preset's spec file: editing it records anew
    output:
        manifest="results/captures/{preset}/manifest.yaml",
    params:
        folder=lambda wildcards, output: Path(output.manifest).parent,
    conda:
        "../envs/xpipe.yaml"
    log:
        log("capture", "preset"),
    benchmark:
        bench("capture", "preset")
    threads: 2  # the presets boot two guests at a time
    shell:
        # progress on the terminal too: guests boot and run for minutes
        "xpipe capture --preset {wildcards.preset} -o {params.folder} 2>&1 | tee {log}"
