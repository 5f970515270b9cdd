# xpipe: domain-level page sharing through a designated sharing area, evaluated
# from traces of virtual machines. Four stages, one rule file each, and the
# capture of new traces (run only when asked).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/capture.smk"
include: "workflow/rules/normalise.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/replay.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        rules.build_database.output.db,
        rules.tabulate_summary.output,
        rules.draw_figures.output.png,
