rule base_model:
    input:
        # the toy model trains on every task of the config; a pretrained model needs no data
        data=[data_dir(t) for t in all_data_tasks(config)] if model_source(config) == "toy" else [],
        # a local model's files or the GGUF file: an edit reruns this stage and every one after it
        model=base_model_files(),
    output:
        directory("results/{model}/base"),
    log:
        "logs/{model}/base_model.log",
    benchmark:
        "benchmarks/{model}/base_model.tsv"
    conda:
        "../envs/clue.yaml"
    threads: config["model"]["train"]["threads"]
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        section=json.dumps(model_params(config), sort_keys=True),
    shell:
        "clue base-model --data-dirs {input.data} --params {params.section:q} --out {output} > {log} 2>&1"
