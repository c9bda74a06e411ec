rule table1:
    input:
        table1_evals(),
    output:
        csv=report(f"{TABLES}/table1.csv", category="Table 1", caption="../docs/report/table1.rst"),
        md=report(f"{TABLES}/table1.md", category="Table 1", caption="../docs/report/table1_md.rst"),
        differences=report(
            f"{TABLES}/table1_differences.csv", category="Table 1", caption="../docs/report/table1_differences.rst"
        ),
    log:
        f"logs/{TAG}table1.log",
    benchmark:
        f"benchmarks/{TAG}table1.tsv"
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        forget=FORGET,
        retain=RETAIN,
        methods=METHODS,
        first_seed=SEEDS[0],
    shell:
        "clue table1 --evals {input} --forget {params.forget} --retain {params.retain}"
        " --methods {params.methods} --first-seed {params.first_seed}"
        " --csv {output.csv} --md {output.md} --differences {output.differences} > {log} 2>&1"


rule tables_5_6:
    """Appendix F (every general task's accuracy) and appendix G (1-accuracy, MIA, Rouge-L) per
    checkpoint, from Table 1's eval JSONs."""
    input:
        table1_evals(),
    output:
        table5=report(f"{TABLES}/table5.csv", category="Table 5", caption="../docs/report/table5.rst"),
        table6=report(f"{TABLES}/table6.csv", category="Table 6", caption="../docs/report/table6.rst"),
    log:
        f"logs/{TAG}tables_5_6.log",
    benchmark:
        f"benchmarks/{TAG}tables_5_6.tsv"
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        forget=FORGET,
        retain=RETAIN,
        methods=METHODS,
        first_seed=SEEDS[0],
    shell:
        "clue table1 --evals {input} --forget {params.forget} --retain {params.retain}"
        " --methods {params.methods} --first-seed {params.first_seed}"
        " --table5 {output.table5} --table6 {output.table6} > {log} 2>&1"
