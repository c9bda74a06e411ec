rule masks:
    """Forget and conflict neurons -> axis masks over their parameter rows/columns."""
    input:
        assign="results/{model}/{run}assign/{forget}__{retain}.json",
        base="results/{model}/base",
    output:
        "results/{model}/{run}masks/{forget}__{retain}/clue.safetensors",
    log:
        "logs/{model}/masks/{run}{forget}__{retain}/clue.log",
    benchmark:
        "benchmarks/{model}/masks/{run}{forget}__{retain}/clue.tsv"
    wildcard_constraints:
        run=CIRCUIT_RUN,
    priority: PRIORITY["logic"]
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "clue masks --assign {input.assign} --model-dir {input.base} --localizer clue"
        " --model-name {wildcards.model} --out {output} > {log} 2>&1"


rule membership_masks:
    """The set-membership ablation's categories -> its masks (trained as CLUE's: clue-membership)."""
    input:
        assign="results/{model}/assign-membership/{forget}__{retain}.json",
        base="results/{model}/base",
    output:
        "results/{model}/masks/{forget}__{retain}/clue-membership.safetensors",
    log:
        "logs/{model}/masks/{forget}__{retain}/clue-membership.log",
    benchmark:
        "benchmarks/{model}/masks/{forget}__{retain}/clue-membership.tsv"
    priority: PRIORITY["logic"]
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "clue masks --assign {input.assign} --model-dir {input.base} --localizer clue"
        " --model-name {wildcards.model} --out {output} > {log} 2>&1"


rule random_masks:
    """CLUE's random-mask control: its categories moved to random heads of each layer, every matrix
    keeping CLUE's forget and conflict fractions (clue.masks.random_control), one mask a seed."""
    input:
        assign="results/{model}/assign/{forget}__{retain}.json",
        base="results/{model}/base",
    output:
        "results/{model}/masks/{forget}__{retain}/random-s{seed}.safetensors",
    log:
        "logs/{model}/masks/{forget}__{retain}/random-s{seed}.log",
    benchmark:
        "benchmarks/{model}/masks/{forget}__{retain}/random-s{seed}.tsv"
    wildcard_constraints:
        seed="-?[0-9]+",
    priority: PRIORITY["logic"]
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "clue masks --assign {input.assign} --model-dir {input.base} --localizer random --seed {wildcards.seed}"
        " --model-name {wildcards.model} --out {output} > {log} 2>&1"


rule random_localizer_masks:
    """A localizer's random-mask control (Table 1's random-<localizer>): its mask's rows, columns
    and entries moved at random inside each matrix, every matrix keeping the localizer's sizes
    (clue.masks.random_like), one mask a seed."""
    input:
        "results/{model}/masks/{forget}__{retain}/{localizer}.safetensors",
    output:
        "results/{model}/masks/{forget}__{retain}/random-{localizer}-s{seed}.safetensors",
    log:
        "logs/{model}/masks/{forget}__{retain}/random-{localizer}-s{seed}.log",
    benchmark:
        "benchmarks/{model}/masks/{forget}__{retain}/random-{localizer}-s{seed}.tsv"
    wildcard_constraints:
        seed="-?[0-9]+",
        localizer="|".join(LOCALIZERS),
    priority: PRIORITY["logic"]
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "clue masks --like {input} --pair {wildcards.forget}__{wildcards.retain} --localizer random"
        " --seed {wildcards.seed} --model-name {wildcards.model} --out {output} > {log} 2>&1"


# Table 1's methods go one job per checkpoint (unlearn.jobs: per_checkpoint) or one per pair
# (per_pair: rule unlearn_pair takes them over); method variants (clue-<ablation>,
# <localizer>-r<ratio>) and sparsity runs always go one job per checkpoint.
PER_CHECKPOINT = config["unlearn"]["jobs"] == "per_checkpoint"


rule unlearn:
    input:
        base="results/{model}/base",
        forget="results/{model}/data/{forget}",
        retain=retain_dirs,
        # the general tasks' test questions: the unrelated knowledge of the global-effect record
        general=[data_dir(t) for t in config["tasks"]["general"]],
        masks=unlearn_masks,
        tuned=tuned_choice,
    output:
        directory("results/{model}/{run}unlearned/{forget}__{retain}/{method}"),
    log:
        "logs/{model}/unlearn/{run}{forget}__{retain}/{method}.log",
    benchmark:
        "benchmarks/{model}/unlearn/{run}{forget}__{retain}/{method}.tsv"
    wildcard_constraints:
        method=r"(?!origin$)[a-z0-9_]+(-[a-z0-9_+.]+)?",
        run=r"(seed-?[0-9]+/|sparsity[0-9.]+/)?",
    priority: PRIORITY["unlearn"]
    conda:
        "../envs/clue.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        section=lambda w: unlearn_section(w.run, w.method),
        method=lambda w: unlearn_loss(w.method),
        masks=lambda w, input: f"--masks {input.masks}" if input.masks else "",
        tuned=lambda w, input: f"--tuned {input.tuned}" if input.tuned else "",
    shell:
        "OMP_NUM_THREADS={threads} clue unlearn --base-dir {input.base} --forget-dir {input.forget}"
        " --retain-dir {input.retain} --unrelated-dirs {input.general} --method {params.method} {params.masks}"
        " --rows {wildcards.method} {params.tuned} --params {params.section:q}"
        " --out {output} --no-progress > {log} 2>&1"


if not PER_CHECKPOINT and TRAINED:

    rule unlearn_pair:
        """Every unlearned checkpoint of one forget x retain pair (and repeat), one after the other
        in one process (unlearn.jobs: per_pair); the same checkpoints as rule `unlearn`."""
        input:
            base="results/{model}/base",
            forget="results/{model}/data/{forget}",
            retain=retain_dirs,
            # the general tasks' test questions: the unrelated knowledge of the global-effect record
            general=[data_dir(t) for t in config["tasks"]["general"]],
            masks=lambda w: [
                m for method in TRAINED for m in [method_masks(w.model, w.forget, w.retain, method, w.run)] if m
            ],
            tuned=tuned_choice,
        output:
            [directory(f"results/{{model}}/{{run}}unlearned/{{forget}}__{{retain}}/{m}") for m in TRAINED],
        log:
            "logs/{model}/unlearn_pair/{run}{forget}__{retain}.log",
        benchmark:
            "benchmarks/{model}/unlearn_pair/{run}{forget}__{retain}.tsv"
        wildcard_constraints:
            run=SEED_RUN,
            retain=r"[A-Za-z0-9_]+",  # a retain set of several tasks runs CLUE alone (rule unlearn)
        priority: PRIORITY["unlearn"]
        conda:
            "../envs/clue.yaml"
        threads: 1
        resources:
            mem_mb=8000,
            runtime=120 * len(TRAINED),
        params:
            section=lambda w: unlearn_section(w.run),
            methods=[unlearn_loss(m) for m in TRAINED],
            rows=TRAINED,
            tuned=lambda w, input: f"--tuned {input.tuned}" if input.tuned else "",
            masks=lambda w: [method_masks(w.model, w.forget, w.retain, m, w.run) or "none" for m in TRAINED],
        shell:
            "OMP_NUM_THREADS={threads} clue unlearn --base-dir {input.base} --forget-dir {input.forget}"
            " --retain-dir {input.retain} --unrelated-dirs {input.general} --method {params.methods}"
            " --masks {params.masks} --rows {params.rows} {params.tuned}"
            " --params {params.section:q} --out {output} --no-progress > {log} 2>&1"

    ruleorder: unlearn_pair > unlearn


# The localizers among the config's methods. Those that score the forget set alone (DEPN, MEMIT's
# causal tracing) make one mask a forget set, copied to each of its pairs by rule `pair_mask`.
LOCALIZERS_RUN = [m for m in METHODS if m in LOCALIZERS]
FORGET_ONLY = [name for name, localizer in LOCALIZERS.items() if not localizer.reads_retain]
PAIR_LOCALIZERS = [m for m in LOCALIZERS_RUN if m not in FORGET_ONLY]
FORGET_SET = r"[A-Za-z0-9]+(_[A-Za-z0-9]+)*"  # a forget set's name has no "__": not a pair's directory


rule localize:
    """A baseline localizer's mask (WAGLE, DEPN, PCGU, MEMIT-style causal tracing), trained
    inside by the same masked fine-tuning (PO + retain loss). With localize.jobs: per_pair, only for
    retain sets of several tasks (Figure 3's general corpus); rule localize_pair takes the rest."""
    input:
        base="results/{model}/base",
        forget="results/{model}/data/{forget}",
        retain=retain_dirs,
    output:
        "results/{model}/masks/{forget}__{retain}/{localizer}.safetensors",
    log:
        "logs/{model}/localize/{forget}__{retain}/{localizer}.log",
    benchmark:
        "benchmarks/{model}/localize/{forget}__{retain}/{localizer}.tsv"
    wildcard_constraints:
        localizer="|".join(n for n in LOCALIZERS if n not in FORGET_ONLY),
    priority: PRIORITY["localize"]
    conda:
        "../envs/clue.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        section=section("localize"),
    shell:
        "OMP_NUM_THREADS={threads} clue localize --base-dir {input.base} --forget-dir {input.forget}"
        " --retain-dir {input.retain} --localizer {wildcards.localizer} --model-name {wildcards.model}"
        " --params {params.section:q} --out {output} > {log} 2>&1"


rule localize_forget:
    """The mask of a localizer that scores the forget set alone (DEPN, MEMIT), once a forget set."""
    input:
        base="results/{model}/base",
        forget="results/{model}/data/{forget}",
    output:
        "results/{model}/masks/{forget}/{localizer}.safetensors",
    log:
        "logs/{model}/localize/{forget}/{localizer}.log",
    benchmark:
        "benchmarks/{model}/localize/{forget}/{localizer}.tsv"
    wildcard_constraints:
        localizer="|".join(FORGET_ONLY),
        forget=FORGET_SET,
    priority: PRIORITY["localize"]
    conda:
        "../envs/clue.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        section=section("localize"),
    shell:
        "OMP_NUM_THREADS={threads} clue localize --base-dir {input.base} --forget-dir {input.forget}"
        " --localizer {wildcards.localizer} --model-name {wildcards.model}"
        " --params {params.section:q} --out {output} > {log} 2>&1"


rule pair_mask:
    """A forget-set-only localizer's mask at its pair's path (DESIGN section 6): the same bytes for
    every retain set."""
    input:
        "results/{model}/masks/{forget}/{localizer}.safetensors",
    output:
        "results/{model}/masks/{forget}__{retain}/{localizer}.safetensors",
    log:
        "logs/{model}/pair_mask/{forget}__{retain}/{localizer}.log",
    benchmark:
        "benchmarks/{model}/pair_mask/{forget}__{retain}/{localizer}.tsv"
    wildcard_constraints:
        localizer="|".join(FORGET_ONLY),
        forget=FORGET_SET,
    localrule: True
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=100,
        runtime=5,
    shell:
        "cp {input} {output} 2> {log}"


if config["localize"]["jobs"] == "per_pair" and PAIR_LOCALIZERS:

    rule localize_pair:
        """Every baseline localizer of the config that scores the retain set, on one forget x retain
        pair, in one process on one loaded model (localize.jobs: per_pair); the same masks as rule
        `localize`. (DEPN and MEMIT: rule localize_forget.)"""
        input:
            base="results/{model}/base",
            forget="results/{model}/data/{forget}",
            retain=retain_dirs,
        output:
            expand("results/{{model}}/masks/{{forget}}__{{retain}}/{localizer}.safetensors", localizer=PAIR_LOCALIZERS),
        log:
            "logs/{model}/localize_pair/{forget}__{retain}.log",
        benchmark:
            "benchmarks/{model}/localize_pair/{forget}__{retain}.tsv"
        wildcard_constraints:
            retain=r"[A-Za-z0-9_]+",
        priority: PRIORITY["localize"]
        conda:
            "../envs/clue.yaml"
        threads: 1
        resources:
            mem_mb=8000,
            runtime=60 * len(PAIR_LOCALIZERS),
        params:
            section=section("localize"),
            localizers=PAIR_LOCALIZERS,
        shell:
            "OMP_NUM_THREADS={threads} clue localize --base-dir {input.base} --forget-dir {input.forget}"
            " --retain-dir {input.retain} --localizer {params.localizers} --model-name {wildcards.model}"
            " --params {params.section:q} --out {output} > {log} 2>&1"

    ruleorder: localize_pair > localize


rule localize_ratio:
    """A baseline localizer at another forget ratio (Figure 6): the mask of `localize` with
    localize.ratios.<localizer> set to the ratio in the file name."""
    input:
        base="results/{model}/base",
        forget="results/{model}/data/{forget}",
        retain=retain_dirs,
    output:
        "results/{model}/masks/{forget}__{retain}/{localizer}-r{ratio}.safetensors",
    log:
        "logs/{model}/localize/{forget}__{retain}/{localizer}-r{ratio}.log",
    benchmark:
        "benchmarks/{model}/localize/{forget}__{retain}/{localizer}-r{ratio}.tsv"
    wildcard_constraints:
        localizer="|".join(LOCALIZERS),
        ratio=r"[0-9.]+",
    priority: PRIORITY["localize"]
    conda:
        "../envs/clue.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        section=lambda w: json.dumps(
            {**config["localize"], "ratios": {**config["localize"]["ratios"], w.localizer: float(w.ratio)}},
            sort_keys=True,
        ),
    shell:
        "OMP_NUM_THREADS={threads} clue localize --base-dir {input.base} --forget-dir {input.forget}"
        " --retain-dir {input.retain} --localizer {wildcards.localizer} --model-name {wildcards.model}"
        " --params {params.section:q} --out {output} > {log} 2>&1"
