rule data:
    input:
        sources=data_source_files,  # the task's local data and corpus files: an edit reruns it
    output:
        directory("results/{model}/data/{task}"),
    log:
        "logs/{model}/data/{task}.log",
    benchmark:
        "benchmarks/{model}/data/{task}.tsv"
    conda:
        "../envs/clue.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        section=lambda w: json.dumps(data_params(config, w.task), sort_keys=True),
    shell:
        "clue data --task {wildcards.task} --params {params.section:q} --out {output} > {log} 2>&1"
