# The stability target: CLUE's neuron categories of every Table 1 pair from circuits found with
# each of stability.seeds (config `stability`; clue.reports.stability).
STABILITY_SEEDS = config["stability"]["seeds"]
STABILITY_PAIRS = [f"{f}__{r}" for f in FORGET for r in RETAIN]


rule stability_table:
    """Jaccard overlap of each category between every two circuit seeds, per pair."""
    input:
        [f"results/{MODEL}/{circuit_seed_run(s)}assign/{p}.json" for p in STABILITY_PAIRS for s in STABILITY_SEEDS],
    output:
        csv=report(f"{TABLES}/stability.csv", category="Stability"),
        md=f"{TABLES}/stability.md",
    log:
        f"logs/{TAG}stability.log",
    benchmark:
        f"benchmarks/{TAG}stability.tsv"
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        pairs=STABILITY_PAIRS,
        seeds=STABILITY_SEEDS,
    shell:
        "clue stability --pairs {params.pairs} --seeds {params.seeds} --assignments {input}"
        " --csv {output.csv} --md {output.md} > {log} 2>&1"


rule stability:
    """CLUE's categories across circuit seeds (config `stability`)."""
    input:
        rules.stability_table.output.md,
