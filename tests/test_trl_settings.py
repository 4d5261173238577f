"""Every resolved TRL setting is recorded on the run, and ``report`` warns when the runs of a table differ in one
that the grid's axes do not explain (issue 27 §3)."""

from __future__ import annotations

import json

import pytest
from report_store import RunSpec, build_store

from lgrpo_bench.reports import load_report_table
from lgrpo_bench.reports.trl_settings import flat_settings, setting_differences, trl_settings_notes
from lgrpo_bench.tracking import schema as t

SETTINGS = {"loss_type": "grpo", "vllm_importance_sampling_mode": "sequence_mask", "bf16": False, "seed": 0,
            "output_dir": "runs/a"}


def record(trl_version: str = "1.16.0", **changes) -> dict:
    return {"trl_version": trl_version, "args": {**SETTINGS, **changes}}


def keys_of(runs) -> list[str]:
    return [d.key for d in setting_differences([(params, flat_settings(rec)) for params, rec in runs])]


GRPO = {"algorithm.name": "grpo", "model.name": "tiny-s"}
DAPO = {"algorithm.name": "dapo", "model.name": "tiny-s"}


def test_runs_of_one_config_must_share_their_settings():
    # the same config, two seeds: a default that moved is named
    assert keys_of([({**GRPO, "train.seed": "0"}, record()),
                    ({**GRPO, "train.seed": "1"}, record(vllm_importance_sampling_mode="token_truncate"))]) \
        == ["vllm_importance_sampling_mode"]
    # per-run settings (seed, folder) differ freely
    assert keys_of([({**GRPO, "train.seed": "0"}, record()),
                    ({**GRPO, "train.seed": "1"}, record(seed=1, output_dir="runs/b"))]) == []
    # a setting present in one run and absent in the other (another TRL) differs too
    other = record()
    other["args"] = {k: v for k, v in other["args"].items() if k != "bf16"}
    assert keys_of([(GRPO, record()), ({**GRPO, "train.seed": "1"}, other)]) == ["bf16"]


def test_settings_that_follow_an_axis_are_no_warning_but_the_trl_version_always_is():
    assert keys_of([(GRPO, record()), (DAPO, record(loss_type="dapo"))]) == []  # loss_type follows algorithm.name
    assert keys_of([(GRPO, record()), (DAPO, record("1.17.0", loss_type="dapo"))]) == ["trl_version"]


def test_the_warning_names_the_key_and_its_values():
    class Run:
        def __init__(self, run_id, params):
            self.mlflow_run_id, self.params = run_id, params

    runs = [Run("a", GRPO), Run("b", {**GRPO, "train.seed": "1"}), Run("c", {**GRPO, "train.seed": "2"})]
    notes = trl_settings_notes(runs, {"a": record(), "b": record(), "c": record(bf16=True)})
    assert notes == ["warning: the runs of this table differ in TRL settings that the grid's axes do not explain: "
                     "bf16 (false in 2 runs, true in 1 run) (each run's trl_args.json artifact holds every setting)"]
    assert trl_settings_notes(runs, {"a": record(), "b": record(), "c": None}) == [
        "1 of the 3 runs have no trl_args.json artifact (trained before TRL settings were recorded): their TRL "
        "settings are not compared"]


@pytest.mark.parametrize(("second", "warned"), [({}, False), ({"vllm_importance_sampling_mode": "token_truncate"}, True)])
def test_report_warns_from_the_recorded_artifacts(tmp_path, second, warned):
    specs = [RunSpec("grpo", seed, acc={"arith": 0.5}) for seed in (0, 1)]
    uri, client, ids, _ = build_store(tmp_path, specs)
    for spec, changes in zip(specs, ({}, second)):
        client.log_text(ids[spec.run_id], json.dumps(record(seed=spec.seed, **changes)), t.ARTIFACT_TRL_ARGS)
    table, _, _ = load_report_table(uri, experiments=["paper"], statistics=False)
    warnings = [note for note in table.notes if note.startswith("warning: the runs of this table differ in TRL")]
    assert bool(warnings) is warned, table.notes
    if warned:
        assert "vllm_importance_sampling_mode (" in warnings[0] and "seed" not in warnings[0]


def test_a_training_run_records_every_resolved_trl_setting(warm_tiny, tmp_path):
    import trl
    from test_train_run import execute, short_run

    from lgrpo_bench.runs.resolve import build_run
    from lgrpo_bench.tracking import open_client

    config = build_run(short_run(tmp_path, warm_tiny.path, algorithm={"name": "grpo"},
                                 train={"max_steps": 1, "heldout_every": 0, "save_every": 0, "samples_every": 0, "seed": 3}))
    _, result = execute(config)
    client = open_client(config.tracking.uri)
    local = client.download_artifacts(result.mlflow_run_id, t.ARTIFACT_TRL_ARGS, str(tmp_path / "artifacts"))
    recorded = json.loads(open(local).read())
    assert recorded["trl_version"] == trl.__version__
    args = recorded["args"]
    from trl import GRPOConfig

    assert set(args) == set(GRPOConfig(output_dir=str(tmp_path), use_cpu=True).to_dict())  # every field
    assert args["seed"] == args["data_seed"] == 3 and args["loss_type"] == "grpo" and args["num_generations"] == 4
    assert args["vllm_importance_sampling_correction"] is True and args["max_steps"] == 1
