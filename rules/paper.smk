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
        csv=report(f"{TABLES}/table2.csv", category="Table 2", caption="../docs/report/table2.rst"),
        md=f"{TABLES}/table2.md",
    log:
        f"logs/{TAG}table2.log",
    benchmark:
        f"benchmarks/{TAG}table2.tsv"
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        ablations=ABLATIONS,
    shell:
        "clue table2 --clue {input.clue} --ablation-evals {input.ablations} --ablations {params.ablations}"
        " --csv {output.csv} --md {output.md} > {log} 2>&1"


rule fig7:
    """Figure 7 (appendix I): the composition by matrix type (q, k, v, o, gate, up, down) of CLUE's
    forget and conflict masks and of each localizer's mask, for paper.forget with every retain set."""
    input:
        masks=[f"results/{MODEL}/masks/{PAPER_FORGET}__{r}/{s}.safetensors" for r in RETAIN for s in SITE_SELECTIONS],
        base=f"results/{MODEL}/base",
    output:
        csv=f"{TABLES}/figures/fig7_{PAPER_FORGET}.csv",
        figure=report(
            f"{TABLES}/figures/fig7_{PAPER_FORGET}.svg", category="Figures", caption="../docs/report/fig7.rst"
        ),
    log:
        f"logs/{TAG}fig7.log",
    benchmark:
        f"benchmarks/{TAG}fig7.tsv"
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=4000,
        runtime=10 * len(RETAIN),
    params:
        labels=SITE_SELECTIONS,
        pairs=[f"{PAPER_FORGET}__{r}" for r in RETAIN],
    shell:
        "clue fig7 --pairs {params.pairs} --labels {params.labels} --masks {input.masks} --model-dir {input.base}"
        " --csv {output.csv} --figure {output.figure} > {log} 2>&1"


SPARSITIES = config["paper"]["sparsities"]
RATIOS = config["paper"]["ratios"]


RETAIN_SETS = retain_sets(config)
# Figure 3's general corpus (the paper's MMLU): its tasks are the fixed utility yardstick, and
# CLUE and WAGLE are trained with it as the retain set for the reference lines.
GENERAL_CORPUS = config["paper"]["general_retain"] or []
FIG3_REFERENCES = [m for m in ("clue", "wagle") if m in METHODS] if GENERAL_CORPUS else []


rule fig3:
    """Figure 3: CLUE on paper.forget with retain sets of 1 .. N tasks (each task its own retain
    circuit), against the general corpus's utility; CLUE and WAGLE with the general corpus as the
    retain set as reference lines (section 6.2)."""
    input:
        clue=[f"results/{MODEL}/eval/{PAPER_FORGET}__{r}/clue.json" for r in RETAIN_SETS],
        references=[
            f"results/{MODEL}/eval/{PAPER_FORGET}__{'+'.join(GENERAL_CORPUS)}/{m}.json" for m in FIG3_REFERENCES
        ],
    output:
        csv=f"{TABLES}/figures/fig3_{PAPER_FORGET}.csv",
        figure=report(
            f"{TABLES}/figures/fig3_{PAPER_FORGET}.svg", category="Figures", caption="../docs/report/fig3.rst"
        ),
    log:
        f"logs/{TAG}fig3.log",
    benchmark:
        f"benchmarks/{TAG}fig3.tsv"
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        pair=f"{PAPER_FORGET}__retain-sets",
        yardstick=GENERAL_CORPUS,
        general=GENERAL,
    shell:
        "clue sweep-figure --figure fig3 --pair {params.pair} --clue-evals {input.clue}"
        " --references {input.references} --yardstick {params.yardstick} --general {params.general}"
        " --csv {output.csv} --out {output.figure} > {log} 2>&1"


rule table3:
    """Table 3: forget and conflict neurons before unlearning and after (the circuits found again
    on each pair's CLUE checkpoint, solved again)."""
    input:
        before=expand("results/{model}/assign/{forget}__{retain}.json", model=MODEL, forget=FORGET, retain=RETAIN),
        after=[f"results/{MODEL}/after-{f}__{r}/assign/{f}__{r}.json" for f in FORGET for r in RETAIN],
    output:
        csv=report(f"{TABLES}/table3.csv", category="Table 3", caption="../docs/report/table3.rst"),
        md=f"{TABLES}/table3.md",
    log:
        f"logs/{TAG}table3.log",
    benchmark:
        f"benchmarks/{TAG}table3.tsv"
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        forget=FORGET,
        retain=RETAIN,
    shell:
        "clue table3 --before {input.before} --after {input.after} --forget {params.forget}"
        " --retain {params.retain} --csv {output.csv} --md {output.md} > {log} 2>&1"


rule fig4:
    """Figure 4: the paper pair's circuits at each sparsity of paper.sparsities (faithfulness) and
    CLUE run from them (change in forget efficacy)."""
    input:
        circuits=[
            f"results/{MODEL}/{sparsity_run(s)}circuits/{t}/{m}.json"
            for s in SPARSITIES
            for t in (PAPER_FORGET, PAPER_RETAIN)
            for m in MODES
        ],
        clue=[f"results/{MODEL}/{sparsity_run(s)}eval/{PAPER_PAIR}/clue.json" for s in SPARSITIES],
        origin=f"results/{MODEL}/eval/{PAPER_PAIR}/origin.json",
    output:
        csv=f"{TABLES}/figures/fig4_{PAPER_PAIR}.csv",
        figure=report(f"{TABLES}/figures/fig4_{PAPER_PAIR}.svg", category="Figures", caption="../docs/report/fig4.rst"),
    log:
        f"logs/{TAG}fig4.log",
    benchmark:
        f"benchmarks/{TAG}fig4.tsv"
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        pair=PAPER_PAIR,
        sparsities=SPARSITIES,
    shell:
        "clue sweep-figure --figure fig4 --pair {params.pair} --sparsities {params.sparsities}"
        " --circuits {input.circuits} --clue-evals {input.clue} --origin {input.origin}"
        " --csv {output.csv} --out {output.figure} > {log} 2>&1"


rule fig6:
    """Figure 6: every localizer at each forget ratio of paper.ratios, and CLUE at the fractions its
    sparsity runs (Figure 4) modified."""
    input:
        evals=[f"results/{MODEL}/eval/{PAPER_PAIR}/{loc}-r{r:g}.json" for loc in LOCALIZERS_RUN for r in RATIOS],
        clue=[f"results/{MODEL}/{sparsity_run(s)}eval/{PAPER_PAIR}/clue.json" for s in SPARSITIES],
    output:
        csv=f"{TABLES}/figures/fig6_{PAPER_PAIR}.csv",
        figure=report(f"{TABLES}/figures/fig6_{PAPER_PAIR}.svg", category="Figures", caption="../docs/report/fig6.rst"),
    log:
        f"logs/{TAG}fig6.log",
    benchmark:
        f"benchmarks/{TAG}fig6.tsv"
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        pair=PAPER_PAIR,
        sparsities=SPARSITIES,
        methods=[loc for loc in LOCALIZERS_RUN for r in RATIOS],
        ratios=[r for loc in LOCALIZERS_RUN for r in RATIOS],
    shell:
        "clue sweep-figure --figure fig6 --pair {params.pair} --sparsities {params.sparsities}"
        " --clue-evals {input.clue} --evals {input.evals} --methods {params.methods} --ratios {params.ratios}"
        " --csv {output.csv} --out {output.figure} > {log} 2>&1"


rule paper:
    """Every table and figure of the paper that this version builds (README "The paper target")."""
    input:
        f"{TABLES}/table1.csv",
        f"{TABLES}/table1.md",
        f"{TABLES}/table2.csv" if "clue" in METHODS else [],
        f"{TABLES}/table3.csv" if "clue" in METHODS else [],
        f"{TABLES}/table5.csv",
        f"{TABLES}/table6.csv",
        rules.fig7.output.figure if SITE_SELECTIONS else [],
        rules.fig3.output.figure if "clue" in METHODS else [],
        rules.fig4.output.figure if "clue" in METHODS else [],
        rules.fig6.output.figure if "clue" in METHODS else [],
