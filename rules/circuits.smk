rule circuit:
    """Edge Pruning with a noising or denoising intervention. Depends only on the model, the
    task and the `circuit` section, so one forget circuit serves every pair that uses it."""
    input:
        base="results/{model}/base",
        data="results/{model}/data/{task}",
    output:
        json="results/{model}/circuits/{task}/{mode}.json",
        drawing="results/{model}/circuits/{task}/{mode}.svg",
    params:
        section=section("circuit"),
    wildcard_constraints:
        mode="noising|denoising",
    log:
        "logs/{model}/circuit/{task}/{mode}.log",
    benchmark:
        "benchmarks/{model}/circuit/{task}/{mode}.tsv"
    conda:
        "../envs/clue.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
    shell:
        "clue circuit --model-dir {input.base} --data-dir {input.data} --task {wildcards.task}"
        " --model-name {wildcards.model} --mode {wildcards.mode} --params {params.section:q}"
        " --out {output.json} --drawing {output.drawing} > {log} 2>&1"
