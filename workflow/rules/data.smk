# Data: fetch s1K-1.1 once (on the submit host), split into validation + nested subsets.
# The demo builds its table, tokenizer and tiny models here too.
# Local jobs: the hub downloads run on the submit host (compute nodes may have no network);
# data_lengths tokenizes 1000 rows, CPU work of a minute at most; split_data and the demo's table and
# tokenizer take seconds (a cluster job would wait in the queue longer than it runs).


localrules:
    fetch_data,
    fetch_model,
    fetch_tasks,
    data_lengths,
    split_data,
    demo_table,
    demo_tokenizer,


rule fetch_data:
    input:
        lambda wc: [config["data"]["source"]] if is_local(config["data"]["source"]) else [],
    output:
        table=DATA_TABLE,
        meta=DATA_META,
    log:
        "results/logs/fetch_data.log",
    params:
        args=cli(
            {
                "source": config["data"]["source"],
                "revision": config["data"]["revision"],
                "expected-rows": config["data"]["expected_rows"],
            }
        ),
        # a local source of the user's (not built by the demo rules) reruns the data when its
        # bytes change (rerun-triggers has no mtime: a touch or a copy reruns nothing)
        source_sha256=external_sha256(config["data"]["source"]),
    shell:
        "python -m elicit.run prepare_data fetch {params.args} --out {output.table} > {log} 2>&1"


rule split_data:
    input:
        table=DATA_TABLE,
        meta=DATA_META,
    output:
        manifest=DATA_MANIFEST,
    log:
        "results/logs/split_data.log",
    params:
        args=cli(
            {
                "n-val": config["data"]["n_val"],
                "seed": config["data"]["split_seed"],
                "expected-rows": config["data"]["expected_rows"],
            }
        ),
        subsets=" ".join(map(str, SUBSETS)),
    shell:
        "python -m elicit.run prepare_data split --table {input.table} {params.args} "
        "--subsets {params.subsets} --out {output.manifest} > {log} 2>&1"


# Token counts per subset under one size's tokenizer (cost estimates, length policy).
# Not yet a target of `all`: request results/data/lengths/{size}.json explicitly, or add it
# to a consumer's inputs.
rule data_lengths:
    input:
        table=DATA_TABLE,
        manifest=DATA_MANIFEST,
        model=lambda wc: model_input(wc.size, "base"),
        chat_template=lambda wc: MODELS[wc.size].get("chat_template") or [],  # models.<size>.chat_template: its edits rerun
    output:
        grid.data_lengths("{size}"),
    log:
        "results/logs/data_lengths/{size}.log",
    params:
        args=lambda wc: cli(
            {
                "tokenizer": model_source(wc.size, "base"),
                "revision": MODELS[wc.size]["base_revision"],
                "trust-remote-code": MODELS[wc.size]["trust_remote_code"],
                "format": config["data"]["format"],
                "max-seq-len": config["data"]["max_seq_len"],
                "on-too-long": config["data"]["on_too_long"],
                "chat-template": MODELS[wc.size].get("chat_template"),  # unset: left out, the tokenizer's own
            }
        ),
    shell:
        "HF_HUB_OFFLINE=1 python -m elicit.run prepare_data lengths --table {input.table} "
        "--manifest {input.manifest} {params.args} --out {output} > {log} 2>&1"


rule fetch_model:
    output:
        "results/hub/models/{size}/{role}.json",
    log:
        "results/logs/fetch_model/{size}-{role}.log",
    params:
        args=lambda wc: cli(
            {"repo": model_source(wc.size, wc.role), "revision": MODELS[wc.size][f"{wc.role}_revision"]}
        ),
    shell:
        "python -m elicit.run fetch_hub model {params.args} --out {output} > {log} 2>&1"


# The demo table's keywords are laid out along the split that split_data will draw (the
# nested subsets teach more keywords as they grow; see config/demo.yaml), hence the
# split settings here.
rule demo_table:
    output:
        "results/demo/s1k.jsonl",
    log:
        "results/logs/demo/table.log",
    params:
        rows=config["data"]["expected_rows"],
        n_val=config["data"]["n_val"],
        subsets=" ".join(map(str, SUBSETS)),
        split_seed=config["data"]["split_seed"],
        trace_words=config["data"]["demo_trace_words"],
    shell:
        "python -m elicit.run make_demo data --out {output} --rows {params.rows} --n-val {params.n_val} "
        "--subsets {params.subsets} --split-seed {params.split_seed} --trace-words {params.trace_words} > {log} 2>&1"


rule demo_tokenizer:
    input:
        "results/demo/s1k.jsonl",
    output:
        directory("results/demo/tokenizer"),
    log:
        "results/logs/demo/tokenizer.log",
    params:
        tasks=config["eval"]["include_path"] or "",  # relative to the checkout (elicit.repo_path)
    shell:
        "python -m elicit.run make_demo tokenizer --corpus {input} {params.tasks} --out {output} > {log} 2>&1"


rule demo_base:
    input:
        "results/demo/tokenizer",
    output:
        directory("results/demo/models/{size}/base"),
    log:
        "results/logs/demo/{size}-base.log",
    params:
        # a shipped architecture file (relative to the repo: no checkout path) or tiny dimensions
        spec=lambda wc: demo_model_args(wc.size),
        context=lambda wc: MODELS[wc.size]["context"],
    shell:
        "python -m elicit.run make_demo model --tokenizer {input} --out {output} "
        "{params.spec} --context {params.context} > {log} 2>&1"


rule demo_skyline:
    input:
        "results/demo/models/{size}/base",
    output:
        directory("results/demo/models/{size}/skyline"),
    log:
        "results/logs/demo/{size}-skyline.log",
    params:
        tasks=config["eval"]["include_path"] or "",  # relative to the checkout (elicit.repo_path)
        steps=lambda wc: MODELS[wc.size]["demo"]["skyline_steps"],
    shell:
        "python -m elicit.run make_demo skyline --base {input} --tasks {params.tasks} --steps {params.steps} --out {output} > {log} 2>&1"


rule fetch_tasks:
    output:
        "results/hub/tasks.json",
    log:
        "results/logs/fetch_tasks.log",
    params:
        tasks=" ".join(TASKS),  # names checked against the schema's character set
        include=INCLUDE_ARG,  # relative to the checkout (elicit.repo_path)
        revisions=" ".join(f"{t}={r}" for t, r in (config["eval"]["task_revisions"] or {}).items()),
    shell:
        "python -m elicit.run fetch_hub tasks --tasks {params.tasks} {params.include} "
        "--revisions {params.revisions} --out {output} > {log} 2>&1"
