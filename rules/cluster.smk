# Rules that run on the submitting host instead of as cluster jobs (executor: slurm).
# Include it from the Snakefile after the rules it names. They are light: seconds of CPU
# and little memory, so a SLURM job would spend longer queueing than running. `data` also
# downloads datasets, and compute nodes often have no internet access.


localrules:
    data,
    gates,
    cnf,
    solve,
    evaluate_origin,
    table1,
    tables_5_6,
    table2,
    fig3,
    fig4,
    fig6,
    fig7,
    paper,
    audit_table,
    circuits_table,
