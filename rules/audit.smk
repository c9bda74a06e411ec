rule audit_pair:
    """The knowledge-recovery audit (KRS curves, isolated variant, relearning) of every audited
    checkpoint of one forget x retain pair, and the base model's relearning as the reference
    (origin.json), in one process that loads the base model once."""
    input:
        base="results/{model}/base",
        forget="results/{model}/data/{forget}",
        checkpoints=[f"results/{{model}}/unlearned/{{forget}}__{{retain}}/{m}" for m in AUDITED],
    output:
        [f"results/{{model}}/audit/{{forget}}__{{retain}}/{m}.json" for m in AUDITED + ["origin"]],
    log:
        "logs/{model}/audit_pair/{forget}__{retain}.log",
    benchmark:
        "benchmarks/{model}/audit_pair/{forget}__{retain}.tsv"
    conda:
        "../envs/clue.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30 * (len(AUDITED) + 1),
    params:
        section=section("audit"),
        methods=AUDITED + ["origin"],
    shell:
        "OMP_NUM_THREADS={threads} clue audit --base-dir {input.base} --checkpoint {input.checkpoints}"
        " {input.base} --method {params.methods} --forget-dir {input.forget} --forget {wildcards.forget}"
        " --retain {wildcards.retain} --params {params.section:q} --out {output} > {log} 2>&1"


rule audit_table:
    input:
        expand(
            "results/{model}/audit/{forget}__{retain}/{method}.json",
            model=MODEL,
            forget=FORGET,
            retain=RETAIN,
            method=AUDITED + ["origin"],
        ),
    output:
        csv=f"{TABLES}/audit.csv",
        krs=report(
            expand(f"{TABLES}/figures/krs_{{forget}}__{{retain}}.svg", forget=FORGET, retain=RETAIN),
            caption="../docs/report/krs.rst",
            category="Audit",
        ),
        relearn=report(
            expand(f"{TABLES}/figures/relearn_{{forget}}__{{retain}}.svg", forget=FORGET, retain=RETAIN),
            caption="../docs/report/relearn.rst",
            category="Audit",
        ),
        global_effect=report(
            expand(f"{TABLES}/figures/global_{{forget}}__{{retain}}.svg", forget=FORGET, retain=RETAIN),
            caption="../docs/report/global_effect.rst",
            category="Audit",
        ),
    log:
        f"logs/{TAG}audit_table.log",
    benchmark:
        f"benchmarks/{TAG}audit_table.tsv"
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        figures=lambda w, output: os.path.dirname(output.krs[0]) if output.krs else f"{TABLES}/figures",
    shell:
        "clue audit-table --audits {input} --csv {output.csv} --figures {params.figures} > {log} 2>&1"
