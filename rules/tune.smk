# The tune target: every method's learning rate and epochs chosen on validation questions by the
# config's rule (config section `tune`; clue.tune), on each forget set's tuning pair. Table 1's
# trainings of a forget set read the choice made on its pair.
TUNE_PAIR_NAMES = sorted(set(TUNE_PAIRS.values()))
TUNE_GENERAL = config["tasks"]["general"]
# what a tuning training reads of the section: its grid (the rule, budgets and pairs only choose
# among its points, so editing them reruns tune_choose and tune_select alone)
TUNE_TRAINING = json.dumps({"grid": config["tune"]["grid"]}, sort_keys=True)
# what a method's choice reads: the rule (editing the budgets reruns only the report)
TUNE_RULE = json.dumps({"rule": config["tune"]["rule"]}, sort_keys=True)


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
        tune=TUNE_TRAINING,
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
        method="(?!origin$|selected$)[a-z0-9_]+",
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
        tune=TUNE_TRAINING,
        evaluate=section("evaluate"),
    shell:
        "OMP_NUM_THREADS={threads} clue tune --base-dir {input.base} --data-root results/{wildcards.model}/data"
        " --forget {wildcards.forget} --retain {wildcards.retain} --general {params.general}"
        " --method {params.trains} --row {wildcards.method} {params.masks} --unlearn-params {params.unlearn:q}"
        " --tune-params {params.tune:q} --eval-params {params.evaluate:q} --out {output} > {log} 2>&1"


rule tune_choose:
    """The config's rule on one method's grid points on its tuning pair: the learning rate and
    epochs of that method's trainings in Table 1 (one file a method, so tuning one method again
    retrains only its rows)."""
    input:
        origin="results/{model}/tune/{forget}__{retain}/origin.json",
        run="results/{model}/tune/{forget}__{retain}/{method}.json",
    output:
        "results/{model}/tune/{forget}__{retain}/selected/{method}.json",
    log:
        "logs/{model}/tune/{forget}__{retain}/selected/{method}.log",
    benchmark:
        "benchmarks/{model}/tune/{forget}__{retain}/selected/{method}.tsv"
    # a second's work that the method's trainings wait for: before any training or evaluation
    priority: PRIORITY["tune"]
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        tune=TUNE_RULE,
    shell:
        "clue tune-select --pair-dirs results/{wildcards.model}/tune/{wildcards.forget}__{wildcards.retain}"
        " --methods {wildcards.method} --tune-params {params.tune:q} --selected {output} > {log} 2>&1"


if TUNING:

    rule tune_select:
        """The tuning report over every tuning pair: every point with its validation FE interval in
        tuning.csv, the best validation FE at each utility budget (tune.budgets), and a trade-off
        figure a pair."""
        input:
            origin=[f"results/{MODEL}/tune/{p}/origin.json" for p in TUNE_PAIR_NAMES],
            runs=[f"results/{MODEL}/tune/{p}/{m}.json" for p in TUNE_PAIR_NAMES for m in TUNE_METHODS],
        output:
            csv=report(f"{TABLES}/tuning.csv", category="Tuning", caption="../docs/report/tuning.rst"),
            budgets_csv=report(f"{TABLES}/tuning_budgets.csv", category="Tuning", caption="../docs/report/tuning.rst"),
            budgets_md=f"{TABLES}/tuning_budgets.md",
            figures=[
                report(f"{TABLES}/figures/tuning_{p}.svg", category="Tuning", caption="../docs/report/tuning.rst")
                for p in TUNE_PAIR_NAMES
            ],
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
            pair_dirs=[f"results/{MODEL}/tune/{p}" for p in TUNE_PAIR_NAMES],
            methods=TUNE_METHODS,
            tune=section("tune"),
        shell:
            "clue tune-select --pair-dirs {params.pair_dirs} --methods {params.methods} --tune-params {params.tune:q}"
            " --csv {output.csv} --budgets-csv {output.budgets_csv} --budgets-md {output.budgets_md}"
            " --figures {output.figures} > {log} 2>&1"

    rule tune:
        """Every method's learning rate and epochs, chosen on validation questions (config `tune`)."""
        input:
            [f"results/{MODEL}/tune/{p}/selected/{m}.json" for p in TUNE_PAIR_NAMES for m in TUNE_METHODS],
            rules.tune_select.output.csv,
            rules.tune_select.output.budgets_md,
            rules.tune_select.output.figures,


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
