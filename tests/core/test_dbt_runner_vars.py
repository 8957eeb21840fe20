"""run_dbt takes one --vars: a `--vars` the CLI passes through is merged, not overridden."""

import pytest

from core.dbt_runner import DbtError, _split_vars


def test_vars_in_args_are_taken_out_and_parsed_as_yaml() -> None:
    rest, found = _split_vars(["test", "--vars", "{test_all_rows: true}", "-s", "fct_kpi_1h"])
    assert rest == ["test", "-s", "fct_kpi_1h"] and found == {"test_all_rows": True}
    rest, found = _split_vars(["build", '--vars={"late_horizon_minutes": 30}'])
    assert rest == ["build"] and found == {"late_horizon_minutes": 30}
    assert _split_vars(["build"]) == (["build"], {})


def test_vars_that_are_not_a_mapping_say_so() -> None:
    with pytest.raises(DbtError, match="YAML mapping"):
        _split_vars(["test", "--vars", "[1, 2]"])
