# The fail-fast gate (issue 31, elicit/plan/gate.py): the train and evaluation jobs of every size
# after the first of `sizes` wait for results/gate/<first size>.json, which rule gate writes once
# that size's pilot (its smallest full finetune, the selection, one evaluation cell) finished and is
# sane. `gate: open` lifts it; one size has none.
#
# The gate is an order-only input, so adding it, opening it or rebuilding it reruns no finished job:
#  - only while the gate has not passed (no gate file): to a job whose outputs are missing, or to
#    every job after a failed check (its pending file); a passed gate stays open, so a grid finished
#    before the gate (or with its gate files deleted) plans no gate job, and a changed setting
#    reruns the larger sizes' jobs as it would without the gate (tests/test_eval_settings.py);
#  - ancient(): a gate file newer than a job's outputs is no mtime trigger;
#  - the gate file is left out of the input set Snakemake records and compares (the `input` rerun
#    trigger, elicit/plan/gate.py), so gaining or losing it changes no job's inputs.
from elicit.plan import gate as _gate  # noqa: E402

GATE = _gate.pilot(config)
_gate.leave_out_of_recorded_inputs(_gate.DIR)
if GATE and workflow.is_main_process and not os.path.exists(GATE["out"]):
    print(_gate.summary(GATE), file=sys.stderr)
# the gate file as an order-only input of a GPU rule's jobs of a gated size
gate_input = lambda rule: lambda wc: (
    ancient(GATE["out"]) if _gate.waits(GATE, wc.size, _gate.rule_outputs(workflow.get_rule(rule), wc)) else []
)


localrules:
    gate,


rule gate:
    input:
        metrics=GATE["metrics"] if GATE else [],
        selection=GATE["selection"] if GATE else [],
        cell=GATE["cell"] if GATE else [],
    output:
        GATE["out"] if GATE else _gate.path("none"),
    log:
        "results/logs/gate.log",
    shell:
        "python -m elicit.run gate --metrics {input.metrics} --selection {input.selection} --cell {input.cell} "
        "--out {output} 2>&1 | tee {log}"
