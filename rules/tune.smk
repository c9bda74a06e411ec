# The tune target: every method's learning rate and epochs chosen on validation questions by the
# config's rule (config section `tune`; clue.tune). Table 1's trainings read the choice.
TUNE_FORGET, TUNE_RETAIN = tune_pair(config)
TUNE_PAIR = f"{TUNE_FORGET}__{TUNE_RETAIN}"
TUNE_METHODS = (config["tune"]["methods"] or TRAINED) if TUNING else []
TUNE_GENERAL = config["tasks"]["general"]


rule tune_origin:
    """The base model's validation FE, RU and GU: the rule's floors are fractions of them."""
    input:
        base="results/{model}/base",
        data=tune_data,
    output:
        "results/{model}/tune/{forget}__{retain}/origin.json",
    log:
        "logs/{model}/tune/{forget}__{retain}/origin.log",
    benchmark:
        "benchmarks/{model}/tune/{forget}__{retain}/origin.tsv"
    priority: PRIORITY["tune"]
    conda:
        "../envs/clue.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        general=TUNE_GENERAL,
        tune=section("tune"),
        evaluate=section("evaluate"),
    shell:
        "OMP_NUM_THREADS={threads} clue tune --base-dir {input.base} --data-root results/{wildcards.model}/data"
        " --forget {wildcards.forget} --retain {wildcards.retain} --general {params.general}"
        " --tune-params {params.tune:q} --eval-params {params.evaluate:q} --out {output} > {log} 2>&1"


rule tune_method:
    """One method's grid on the tuning pair: a training per learning rate, scored on the validation
    questions after every epoch count of the grid."""
    input:
        base="results/{model}/base",
        data=tune_data,
        masks=lambda w: method_masks(w.model, w.forget, w.retain, w.method),
    output:
        "results/{model}/tune/{forget}__{retain}/{method}.json",
    log:
        "logs/{model}/tune/{forget}__{retain}/{method}.log",
    benchmark:
        "benchmarks/{model}/tune/{forget}__{retain}/{method}.tsv"
    wildcard_constraints:
        method="(?!origin$)[a-z0-9_]+",
    priority: PRIORITY["tune"]
    conda:
        "../envs/clue.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        general=TUNE_GENERAL,
        trains=lambda w: unlearn_loss(w.method),
        masks=lambda w, input: f"--masks {input.masks}" if input.masks else "",
        unlearn=lambda w: unlearn_section(""),
        tune=section("tune"),
        evaluate=section("evaluate"),
    shell:
        "OMP_NUM_THREADS={threads} clue tune --base-dir {input.base} --data-root results/{wildcards.model}/data"
        " --forget {wildcards.forget} --retain {wildcards.retain} --general {params.general}"
        " --method {params.trains} --row {wildcards.method} {params.masks} --unlearn-params {params.unlearn:q}"
        " --tune-params {params.tune:q} --eval-params {params.evaluate:q} --out {output} > {log} 2>&1"


if TUNING:

    rule tune_select:
        """The config's rule on every method's grid: the settings Table 1 trains with, every point in
        tuning.csv and the trade-off figure."""
        input:
            origin=f"results/{MODEL}/tune/{TUNE_PAIR}/origin.json",
            runs=[f"results/{MODEL}/tune/{TUNE_PAIR}/{m}.json" for m in TUNE_METHODS],
        output:
            selected=TUNED,
            csv=report(f"{TABLES}/tuning.csv", category="Tuning", caption="../docs/report/tuning.rst"),
            figure=report(
                f"{TABLES}/figures/tuning_{TUNE_PAIR}.svg", category="Tuning", caption="../docs/report/tuning.rst"
            ),
        log:
            f"logs/{TAG}tune_select.log",
        benchmark:
            f"benchmarks/{TAG}tune_select.tsv"
        conda:
            "../envs/clue.yaml"
        resources:
            mem_mb=1000,
            runtime=10,
        params:
            tune=section("tune"),
        shell:
            "clue tune-select --origin {input.origin} --runs {input.runs} --tune-params {params.tune:q}"
            " --selected {output.selected} --csv {output.csv} --figure {output.figure} > {log} 2>&1"

    rule tune:
        """Every method's learning rate and epochs, chosen on validation questions (config `tune`)."""
        input:
            rules.tune_select.output.csv,
            rules.tune_select.output.figure,


if not TUNING:

    # Nothing to tune without tune.grid: the message says so, and the job fails.
    rule tune:
        log:
            f"logs/{TAG}tune.log",
        benchmark:
            f"benchmarks/{TAG}tune.tsv"
        conda:
            "../envs/clue.yaml"
        message:
            "config key tune.grid is null: nothing to tune (give e.g. tune: {{grid: {{lr: [1.0e-4, 1.0e-3], epochs: [2, 6]}}}})"
        shell:
            "echo 'config key tune.grid is null: nothing to tune' > {log}; exit 1"
