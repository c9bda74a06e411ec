rule gates:
    """Typed gate graph: noising-only edges are AND, denoising-only OR, both ADDER."""
    input:
        noising="results/{model}/{run}circuits/{task}/noising.json",
        denoising="results/{model}/{run}circuits/{task}/denoising.json",
    output:
        json="results/{model}/{run}gates/{task}.json",
        drawing=report(
            "results/{model}/{run}gates/{task}.svg",
            category="Gate graphs",
            subcategory="{run}",
            caption="../docs/report/gates.rst",
        ),
    log:
        "logs/{model}/gates/{run}{task}.log",
    benchmark:
        "benchmarks/{model}/gates/{run}{task}.tsv"
    wildcard_constraints:
        run=CIRCUIT_RUN,
    priority: PRIORITY["logic"]
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "clue gates --noising {input.noising} --denoising {input.denoising} --task {wildcards.task}"
        " --out {output.json} --drawing {output.drawing} > {log} 2>&1"


rule cnf:
    """Phi (Eq. 4) as DIMACS CNF, and the split-variable weighted MaxSAT instance."""
    input:
        forget="results/{model}/{run}gates/{forget}.json",
        retain=retain_gates,
    output:
        cnf="results/{model}/{run}cnf/{forget}__{retain}.cnf",
        wcnf="results/{model}/{run}cnf/{forget}__{retain}.wcnf",
    log:
        "logs/{model}/cnf/{run}{forget}__{retain}.log",
    benchmark:
        "benchmarks/{model}/cnf/{run}{forget}__{retain}.tsv"
    wildcard_constraints:
        run=CIRCUIT_RUN,
    priority: PRIORITY["logic"]
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        section=section("logic"),
    shell:
        "clue cnf --forget-gates {input.forget} --retain-gates {input.retain} --params {params.section:q}"
        " --out-cnf {output.cnf} --out-wcnf {output.wcnf} > {log} 2>&1"


rule solve:
    """SAT decides Phi; RC2 finds the fewest conflict neurons, then the fewest forget neurons."""
    input:
        cnf="results/{model}/{run}cnf/{forget}__{retain}.cnf",
        wcnf="results/{model}/{run}cnf/{forget}__{retain}.wcnf",
        forget="results/{model}/{run}gates/{forget}.json",
        retain=retain_gates,
    output:
        json="results/{model}/{run}assign/{forget}__{retain}.json",
        drawing=report(
            "results/{model}/{run}assign/{forget}__{retain}.svg",
            category="Assignments",
            subcategory="{run}",
            caption="../docs/report/assign.rst",
        ),
    log:
        "logs/{model}/solve/{run}{forget}__{retain}.log",
    benchmark:
        "benchmarks/{model}/solve/{run}{forget}__{retain}.tsv"
    wildcard_constraints:
        run=CIRCUIT_RUN,
    priority: PRIORITY["logic"]
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        section=section("solve"),
    shell:
        "clue solve --cnf {input.cnf} --wcnf {input.wcnf} --forget-gates {input.forget}"
        " --retain-gates {input.retain} --params {params.section:q} --out {output.json}"
        " --drawing {output.drawing} > {log} 2>&1"


rule membership:
    """Table 2's set-membership ablation: forget = neurons of the forget circuit only, conflict = of
    both circuits, no CNF and no solver (clue.logic.membership)."""
    input:
        forget="results/{model}/gates/{forget}.json",
        retain=lambda w: [f"results/{w.model}/gates/{t}.json" for t in w.retain.split("+")],
    output:
        "results/{model}/assign-membership/{forget}__{retain}.json",
    log:
        "logs/{model}/membership/{forget}__{retain}.log",
    benchmark:
        "benchmarks/{model}/membership/{forget}__{retain}.tsv"
    priority: PRIORITY["logic"]
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "clue membership --forget-gates {input.forget} --retain-gates {input.retain} --out {output} > {log} 2>&1"


rule circuits_table:
    """Every circuit of Table 1's forget and retain tasks: its kind, validation and held-out
    faithfulness (flagged below circuit.min_faithfulness), the candidates tried, and each task's
    gate types, checked against its circuits (clue.reports.circuits)."""
    input:
        circuits=expand(
            "results/{model}/circuits/{task}/{mode}.json",
            model=MODEL,
            task=TABLE1_TASKS,
            mode=MODES,
        ),
        gates=expand(
            "results/{model}/gates/{task}.json",
            model=MODEL,
            task=TABLE1_TASKS,
        ),
    output:
        csv=report(f"{TABLES}/circuits.csv", category="Circuits"),
        md=f"{TABLES}/circuits.md",
    log:
        f"logs/{TAG}circuits_table.log",
    benchmark:
        f"benchmarks/{TAG}circuits_table.tsv"
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "clue circuits-table --circuits {input.circuits} --gates {input.gates}"
        " --csv {output.csv} --md {output.md} > {log} 2>&1"
