# ciinv: edit the faces in every video of a folder.
#
#   snakemake --cores N --resources gpu=1          # everything in videos/ -> results/
#   snakemake --cores N --configfile config.yaml overlay.yaml ...
#
# Stages (DESIGN.md): probe -> landmarks -> align -> invert (per shard, GPU) -> merge [-> pti (GPU, optional)]
#   -> edit (codes) [-> stitch (GPU, optional)] -> assemble (renders the codes, GPU; or pastes the stitched crops).
# The rules only name files, params and resources and call the `ciinv` command line.

from snakemake.utils import min_version

min_version("9.0")

# config.yaml sits beside this file; the working directory (--directory) holds videos/ and results/.
configfile: os.path.join(workflow.basedir, "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/inputs.smk"
include: "workflow/rules/faces.smk"
include: "workflow/rules/invert.smk"
include: "workflow/rules/pti.smk"
include: "workflow/rules/edit.smk"
include: "workflow/rules/stitch.smk"
include: "workflow/rules/report.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        all_outputs,


# At the end of a run with failures: each failed video or edit with the one line its log gives as
# the reason, and failed model downloads said once, with the fix (ciinv/failures.py).
onerror:
    from ciinv.failures import summary

    paths = log if isinstance(log, (list, tuple)) else [log]
    text = "".join(open(p, errors="replace").read() for p in paths if p and os.path.isfile(p))
    if summary(text):
        print(summary(text), file=sys.stderr)
