# Rules that run on the submitting host instead of as cluster jobs (executor: slurm).
# Included from the Snakefile after the rules it names. They are light: seconds of CPU and
# little memory, so a SLURM job would spend longer queueing than running. `data` also
# downloads datasets, and compute nodes often have no internet access.
# Add gates, cnf and solve here once those rules exist.


localrules:
    data,
    evaluate_origin,
    table1,
