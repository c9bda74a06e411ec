if config["circuit"]["jobs"] == "per_mode":

    rule circuit:
        """Edge Pruning with a noising or denoising intervention. Depends only on the model, the
        task and the `circuit` section, so one forget circuit serves every pair that uses it."""
        input:
            base=circuit_model,
            data="results/{model}/data/{task}",
            before=lambda w: circuits_before(w, [w.mode]),
        output:
            json="results/{model}/{run}circuits/{task}/{mode}.json",
            drawing=report(
                "results/{model}/{run}circuits/{task}/{mode}.svg",
                category="Circuits",
                subcategory="{run}{task}",
                caption="../docs/report/circuit.rst",
            ),
        log:
            "logs/{model}/circuit/{run}{task}/{mode}.log",
        benchmark:
            "benchmarks/{model}/circuit/{run}{task}/{mode}.tsv"
        wildcard_constraints:
            mode="noising|denoising",
            run=CIRCUIT_RUN,
        priority: PRIORITY["circuit"]
        conda:
            "../envs/clue.yaml"
        threads: config["circuit"]["threads"]
        resources:
            mem_mb=8000,
            runtime=120,
        params:
            section=lambda w: circuit_section(w.run),
            same_sparsity=same_sparsity_flag,
        shell:
            "clue circuit --model-dir {input.base} --data-dir {input.data} --task {wildcards.task}"
            " --model-name {wildcards.model} --mode {wildcards.mode} --params {params.section:q}"
            " --out {output.json} --drawing {output.drawing}{params.same_sparsity} > {log} 2>&1"

else:

    rule circuit_task:
        """Both circuits of one task, noising then denoising, in one process (circuit.jobs:
        per_task): torch and transformers are imported and the model loaded once. The same
        circuit JSONs as rule `circuit`."""
        input:
            base=circuit_model,
            data="results/{model}/data/{task}",
            before=circuits_before,
        output:
            json=expand("results/{{model}}/{{run}}circuits/{{task}}/{mode}.json", mode=MODES),
            drawing=report(
                expand("results/{{model}}/{{run}}circuits/{{task}}/{mode}.svg", mode=MODES),
                category="Circuits",
                subcategory="{run}{task}",
                caption="../docs/report/circuit.rst",
            ),
        log:
            "logs/{model}/circuit_task/{run}{task}.log",
        benchmark:
            "benchmarks/{model}/circuit_task/{run}{task}.tsv"
        wildcard_constraints:
            run=CIRCUIT_RUN,
        priority: PRIORITY["circuit"]
        conda:
            "../envs/clue.yaml"
        threads: config["circuit"]["threads"]
        resources:
            mem_mb=8000,
            runtime=240,
        params:
            section=lambda w: circuit_section(w.run),
            same_sparsity=same_sparsity_flag,
            modes=MODES,
        shell:
            "clue circuit --model-dir {input.base} --data-dir {input.data} --task {wildcards.task}"
            " --model-name {wildcards.model} --mode {params.modes} --params {params.section:q}"
            " --out {output.json} --drawing {output.drawing}{params.same_sparsity} > {log} 2>&1"
