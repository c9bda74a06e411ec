# The paper's tables and figures beyond Table 1 (README "The paper target"), on the pair of
# config key `paper` (paper: WMDP Cyber x SST-2).
PAPER_FORGET, PAPER_RETAIN = paper_pair(config)
PAPER_PAIR = f"{PAPER_FORGET}__{PAPER_RETAIN}"
ABLATIONS = config["paper"]["ablations"]
# The localizations Figure 7 compares: CLUE's forget and conflict masks, then each localizer's.
SITE_SELECTIONS = (["clue"] if "clue" in METHODS else []) + LOCALIZERS_RUN


rule table2:
    """Table 2: CLUE's ablations on the paper pair, each its own checkpoint clue-<ablation>."""
    input:
        clue=f"results/{MODEL}/eval/{PAPER_PAIR}/clue.json",
        ablations=[f"results/{MODEL}/eval/{PAPER_PAIR}/clue-{a}.json" for a in ABLATIONS],
    output:
        csv=report("results/table2.csv", category="Table 2", caption="../docs/report/table2.rst"),
        md="results/table2.md",
    params:
        ablations=ABLATIONS,
    log:
        "logs/table2.log",
    benchmark:
        "benchmarks/table2.tsv"
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "clue table2 --clue {input.clue} --ablation-evals {input.ablations} --ablations {params.ablations}"
        " --csv {output.csv} --md {output.md} > {log} 2>&1"


rule fig7:
    """Figure 7: the share of attention and MLP weights selected by CLUE's forget and conflict
    masks and by each localizer, on the paper pair."""
    input:
        masks=[f"results/{MODEL}/masks/{PAPER_PAIR}/{s}.safetensors" for s in SITE_SELECTIONS],
        base=f"results/{MODEL}/base",
    output:
        csv=f"results/figures/fig7_{PAPER_PAIR}.csv",
        figure=report(f"results/figures/fig7_{PAPER_PAIR}.svg", category="Figures", caption="../docs/report/fig7.rst"),
    params:
        labels=SITE_SELECTIONS,
        pair=PAPER_PAIR,
    log:
        "logs/fig7.log",
    benchmark:
        "benchmarks/fig7.tsv"
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    shell:
        "clue fig7 --masks {input.masks} --labels {params.labels} --model-dir {input.base} --pair {params.pair}"
        " --csv {output.csv} --figure {output.figure} > {log} 2>&1"


rule paper:
    """Every table and figure of the paper that this version builds (README "The paper target")."""
    input:
        "results/table1.csv",
        "results/table1.md",
        "results/table2.csv",
        "results/table5.csv",
        "results/table6.csv",
        rules.fig7.output.figure if SITE_SELECTIONS else [],
