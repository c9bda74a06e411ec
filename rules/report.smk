# Table 1's warnings (clue.caveats) read the circuits of its forget and retain tasks and each
# pair's CLUE masks where CLUE's masks train a row (CLUE, its Table 2 variants, its random control).
CLUE_ROWS = any(m == "random" or method_variant(m)[2] == "clue" for m in METHODS)


rule table1:
    input:
        evals=table1_evals(),
        # what the warnings under the table read (clue.caveats): the forget sets' test questions
        # (chance), the circuits' held-out faithfulness and CLUE's masks
        data=[data_dir(f) for f in FORGET],
        circuits=[f"results/{MODEL}/circuits/{t}/{m}.json" for t in TABLE1_TASKS for m in MODES] if CLUE_ROWS else [],
        masks=[f"results/{MODEL}/masks/{f}__{r}/clue.safetensors" for f in FORGET for r in RETAIN] if CLUE_ROWS else [],
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
        "clue table1 --evals {input.evals} --forget {params.forget} --retain {params.retain}"
        " --methods {params.methods} --first-seed {params.first_seed} --data {input.data}"
        " --circuits {input.circuits} --masks {input.masks}"
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


rule table1_part:
    """One part of the benchmark: one method on one forget set, against Origin, on each of that
    forget set's pairs (its tuning, trainings and evaluations). Each part is a target of its own
    that fits a working session on a CPU where the whole benchmark does not; the parts' eval JSONs
    are Table 1's, so `table1` afterwards only collects them (docs/real-model.md)."""
    input:
        lambda w: [
            f"results/{MODEL}/{repeat}eval/{w.forget}__{r}/{m}.json"
            for r in RETAIN
            for m in dict.fromkeys(["origin", w.method])
            for repeat in (REPEATS if m != "origin" else [""])
        ],
    output:
        f"{TABLES}/parts/{{forget}}/{{method}}.csv",
    log:
        f"logs/{TAG}parts/{{forget}}/{{method}}.log",
    benchmark:
        f"benchmarks/{TAG}parts/{{forget}}/{{method}}.tsv"
    wildcard_constraints:
        method=r"[a-z0-9_]+(-[a-z0-9_+.]+)?",
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        retain=RETAIN,
        methods=lambda w: list(dict.fromkeys(["origin", w.method])),
        first_seed=SEEDS[0],
    shell:
        "clue table1 --evals {input} --forget {wildcards.forget} --retain {params.retain}"
        " --methods {params.methods} --first-seed {params.first_seed} --csv {output} > {log} 2>&1"
