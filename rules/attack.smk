# The robust target: the relearning and quantization attacks on every method's checkpoint of each
# forget set's tuning pair (config `attack`; clue.attack, clue.reports.robust).
ATTACK_PAIRS = sorted(set(TUNE_PAIRS.values()))
ATTACKED = ["origin", *TRAINED]


rule attack:
    """One checkpoint relearned and, separately, quantized; FE on the asked half before and after."""
    input:
        checkpoint=lambda w: (
            f"results/{w.model}/base"
            if w.method == "origin"
            else f"results/{w.model}/unlearned/{w.forget}__{w.retain}/{w.method}"
        ),
        base="results/{model}/base",
        data="results/{model}/data/{forget}",
    output:
        "results/{model}/attack/{forget}__{retain}/{method}.json",
    log:
        "logs/{model}/attack/{forget}__{retain}/{method}.log",
    benchmark:
        "benchmarks/{model}/attack/{forget}__{retain}/{method}.tsv"
    priority: PRIORITY["evaluate"]
    conda:
        "../envs/clue.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        attack=section("attack"),
        evaluate=section("evaluate"),
    shell:
        "OMP_NUM_THREADS={threads} clue attack --checkpoint {input.checkpoint} --method {wildcards.method}"
        " --forget-dir {input.data} --retain {wildcards.retain} --params {params.attack:q}"
        " --eval-params {params.evaluate:q} --out {output} > {log} 2>&1"


rule robust_table:
    """FE as trained, after relearning and after quantization, with intervals, for every method."""
    input:
        records=[f"results/{MODEL}/attack/{p}/{m}.json" for p in ATTACK_PAIRS for m in ATTACKED],
        # the audit's KRS of the same checkpoints
        audits=[f"results/{MODEL}/audit/{p}/{m}.json" for p in ATTACK_PAIRS for m in AUDITED if m in ATTACKED],
    output:
        csv=report(f"{TABLES}/robust_fe.csv", category="Robust forgetting"),
        differences=f"{TABLES}/robust_fe_differences.csv",
        md=f"{TABLES}/robust_fe.md",
        figure=report(f"{TABLES}/figures/robust_fe.svg", category="Robust forgetting"),
    log:
        f"logs/{TAG}robust_table.log",
    benchmark:
        f"benchmarks/{TAG}robust_table.tsv"
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "clue robust --records {input.records} --audits {input.audits} --csv {output.csv} --differences {output.differences} --md {output.md}"
        " --figure {output.figure} > {log} 2>&1"


rule robust:
    """Robust forgetting: the relearning and quantization attacks on every method (config `attack`)."""
    input:
        rules.robust_table.output.md,
        rules.robust_table.output.figure,
