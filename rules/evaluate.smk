rule evaluate_base:
    """lm-eval on the base model over every task of the config, and MIA / Rouge-L on every forget
    set, once: the Origin rows of every pair reuse it."""
    input:
        base="results/{model}/base",
        data=[data_dir(t) for t in all_data_tasks(config)],
    output:
        "results/{model}/eval/base.json",
    log:
        "logs/{model}/evaluate_base.log",
    benchmark:
        "benchmarks/{model}/evaluate_base.tsv"
    conda:
        "../envs/clue.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        section=section("evaluate"),
        tasks=all_data_tasks(config) + config["tasks"]["general_lm_eval"],
        forget=FORGET,
    shell:
        "clue evaluate --checkpoint {input.base} --tasks {params.tasks} --forget-sets {params.forget} --method origin"
        " --data-root results/{wildcards.model}/data --params {params.section:q} --out {output} > {log} 2>&1"


rule evaluate_origin:
    """The Origin row of one forget x retain pair, from the base model's evaluation (accuracy,
    probability of the correct choice, MIA, Rouge-L)."""
    input:
        "results/{model}/eval/base.json",
    output:
        "results/{model}/eval/{forget}__{retain}/origin.json",
    log:
        "logs/{model}/evaluate_origin/{forget}__{retain}.log",
    benchmark:
        "benchmarks/{model}/evaluate_origin/{forget}__{retain}.tsv"
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        section=section("evaluate"),
        general=GENERAL,
    shell:
        "clue evaluate --from-eval {input} --forget {wildcards.forget} --retain {wildcards.retain}"
        " --general {params.general} --method origin --data-root results/{wildcards.model}/data"
        " --params {params.section:q} --out {output} > {log} 2>&1"


EVAL_PER_CHECKPOINT = config["evaluate"]["jobs"] == "per_checkpoint"


rule evaluate:
    """lm-eval on an unlearned checkpoint: forget, retain and general tasks of its pair; then
    MIA and Rouge-L on its forget set with the same loaded model. (With evaluate.jobs: per_pair,
    only Table 2's CLUE variants.)"""
    input:
        ckpt="results/{model}/{run}unlearned/{forget}__{retain}/{method}",
        base="results/{model}/base",
        forget="results/{model}/data/{forget}",
        retain=retain_dirs,
        general=[data_dir(t) for t in config["tasks"]["general"]],
    output:
        "results/{model}/{run}eval/{forget}__{retain}/{method}.json",
    log:
        "logs/{model}/evaluate/{run}{forget}__{retain}/{method}.log",
    benchmark:
        "benchmarks/{model}/evaluate/{run}{forget}__{retain}/{method}.tsv"
    wildcard_constraints:
        method=r"(?!origin$)[a-z0-9_]+(-[a-z0-9_+.]+)?",
        run=r"(seed-?[0-9]+/|sparsity[0-9.]+/)?",
    priority: PRIORITY["evaluate"]
    conda:
        "../envs/clue.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        section=section("evaluate"),
        general=GENERAL,
    shell:
        "OMP_NUM_THREADS={threads} clue evaluate --checkpoint {input.ckpt} --forget {wildcards.forget}"
        " --retain {wildcards.retain} --general {params.general} --method {wildcards.method}"
        " --base-dir {input.base} --data-root results/{wildcards.model}/data --params {params.section:q}"
        " --out {output} > {log} 2>&1"


if not EVAL_PER_CHECKPOINT and TRAINED:

    rule evaluate_pair:
        """lm-eval on every unlearned checkpoint of one forget x retain pair (and repeat), one after
        the other in one process (evaluate.jobs: per_pair); the same eval JSONs as rule `evaluate`."""
        input:
            ckpts=expand("results/{{model}}/{{run}}unlearned/{{forget}}__{{retain}}/{method}", method=TRAINED),
            base="results/{model}/base",
            forget="results/{model}/data/{forget}",
            retain=retain_dirs,
            general=[data_dir(t) for t in config["tasks"]["general"]],
        output:
            expand("results/{{model}}/{{run}}eval/{{forget}}__{{retain}}/{method}.json", method=TRAINED),
        log:
            "logs/{model}/evaluate_pair/{run}{forget}__{retain}.log",
        benchmark:
            "benchmarks/{model}/evaluate_pair/{run}{forget}__{retain}.tsv"
        wildcard_constraints:
            run=SEED_RUN,
            retain=r"[A-Za-z0-9_]+",  # a retain set of several tasks runs CLUE alone (rule unlearn)
        priority: PRIORITY["evaluate"]
        conda:
            "../envs/clue.yaml"
        threads: 1
        resources:
            mem_mb=8000,
            runtime=60 * len(TRAINED),
        params:
            section=section("evaluate"),
            general=GENERAL,
            methods=TRAINED,
        shell:
            "OMP_NUM_THREADS={threads} clue evaluate --checkpoint {input.ckpts} --forget {wildcards.forget}"
            " --retain {wildcards.retain} --general {params.general} --method {params.methods}"
            " --base-dir {input.base} --data-root results/{wildcards.model}/data --params {params.section:q}"
            " --out {output} > {log} 2>&1"

    ruleorder: evaluate_pair > evaluate
