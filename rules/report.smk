rule table1:
    input:
        expand(
            "results/{model}/eval/{forget}__{retain}/{method}.json",
            model=MODEL,
            forget=FORGET,
            retain=RETAIN,
            method=METHODS,
        ),
    output:
        csv="results/table1.csv",
        md="results/table1.md",
    params:
        forget=FORGET,
        retain=RETAIN,
        methods=METHODS,
    log:
        "logs/table1.log",
    benchmark:
        "benchmarks/table1.tsv"
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "clue table1 --evals {input} --forget {params.forget} --retain {params.retain}"
        " --methods {params.methods} --csv {output.csv} --md {output.md} > {log} 2>&1"
