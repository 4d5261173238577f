"""The saved grid view's JSON (``lgrpo_bench.tracking.store.grid_view_state``), by hand; the browser checks of the
same view on a real ``mlflow ui`` are in ``tests/test_servers.py``."""

from __future__ import annotations

from lgrpo_bench.tracking.store import grid_view_state, view_group_label


def test_group_labels_are_named_as_the_mlflow_ui_names_them():
    assert view_group_label(["algorithm.name"], ["dapo_full"]) == "Group: dapo_full"
    assert view_group_label(["algorithm.name", "train.learning_rate"], ["grpo", "1e-05"]) == \
        "Group: algorithm.name: grpo, train.learning_rate: 1e-05"
    assert view_group_label(["algorithm.name"], [""]) == "Group: (none)"


def test_two_axis_grid_view_columns_widths_and_sort_by_hand():
    """Widths at 7.5 px a character: text + 40 px per column, label + 100 px for the run-name column."""
    view = grid_view_state("g", metrics=["eval/arith/acc"], group_by=["algorithm.name", "train.learning_rate"],
                           groups=[("grpo", "1e-05"), ("dapo", "3e-05")], run_names=["0123456789ab"])
    assert view["orderByKey"] == "tags.`lgrpo.seed`" and view["orderByAsc"] is True
    assert view["selectedColumns"] == ["metrics.`eval/arith/acc`", "tags.`lgrpo.seed`", "params.`algorithm.name`",
                                       "params.`train.learning_rate`", "tags.`lgrpo.state`"]
    assert view["columnOrder"] == ["attributes.`Run Name`", "runDateAndNestInfo", "duration", *view["selectedColumns"]]
    assert view["columnWidths"] == {
        "attributes.`Run Name`": 100 + 412,  # "Group: algorithm.name: grpo, train.learning_rate: 1e-05": 55 chars
        "params.`algorithm.name`": 105 + 40,  # 14 chars of header
        "params.`train.learning_rate`": 142 + 40,  # 19 chars: 142.5 rounds to even
        "tags.`lgrpo.seed`": 75 + 40,
        "metrics.`eval/arith/acc`": 218 + 40,  # "0.41933333333333334 (average)": 29 chars
        "tags.`lgrpo.state`": 82 + 40,  # 11 chars of header, longer than every state
    }
    assert view["groupBy"]["groupByKeys"] == [{"mode": "param", "groupByData": "algorithm.name"},
                                              {"mode": "param", "groupByData": "train.learning_rate"}]


def test_a_long_run_name_widens_the_run_name_column():
    view = grid_view_state("g", group_by=["algorithm.name"], groups=[("grpo",)], run_names=["x" * 40])
    assert view["columnWidths"]["attributes.`Run Name`"] == 60 + 300
