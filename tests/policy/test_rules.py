"""The policy's data: the matrix loader refuses inconsistent data, and every unverified cell is
listed for the later check against the arrêté's annex (dmp-access.md §2.5)."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from parcours.policy.rules import RulesError, build_matrix, load_rules

MATRIX = json.loads(resources.files("parcours.policy").joinpath("data", "matrix.json").read_text())


def test_unverified_cells_file_matches_the_data() -> None:
    listed = resources.files("parcours.policy").joinpath("matrix_unverified.txt").read_text()
    lines = [line for line in listed.splitlines() if line and not line.startswith("#")]
    assert lines == load_rules().matrix.unverified()
    # Every ✓? and ? cell is there (§2.5), and no verified one.
    for line in lines:
        assert line.split("\t")[2] in {"✓?", "✗?", "?"}


def test_verified_cells_of_the_reference() -> None:
    matrix = load_rules().matrix
    assert matrix.cell("40", matrix.column_of("90", "42348-3")) == "✗"  # dentist × directives
    assert matrix.cell("80", matrix.column_of("10", "15508-5")) == "✗"  # podologue × delivery
    assert matrix.cell("40", matrix.column_of("10", "34785-6")) == "✗"  # dentist × psy
    assert {matrix.cell("10", column) for column in MATRIX["columns"]} == {"✓"}  # médecin


def test_absent_cell_and_unknown_profession_or_type_read_nothing() -> None:
    matrix = load_rules().matrix
    assert matrix.cell("99", "cr") == "✗"
    assert matrix.cell(None, "cr") == "?"
    assert matrix.column_of("99", "00000-0") is None


def test_a_type_in_two_columns_is_refused() -> None:
    data = json.loads(json.dumps(MATRIX))
    data["columns"]["cr"]["types"].append("15508-5")
    with pytest.raises(RulesError, match="deux colonnes"):
        build_matrix(data)


def test_an_unknown_symbol_or_column_is_refused() -> None:
    data = json.loads(json.dumps(MATRIX))
    data["rows"]["10"]["cells"]["cr"] = "oui"
    with pytest.raises(RulesError, match="symbole"):
        build_matrix(data)
    data = json.loads(json.dumps(MATRIX))
    data["rows"]["10"]["cells"]["inconnue"] = "✓"
    with pytest.raises(RulesError, match="colonne inconnue"):
        build_matrix(data)


def test_parameters_are_named_and_typed_and_change_the_version() -> None:
    with pytest.raises(RulesError, match="inconnu"):
        load_rules(no_such_parameter=True)
    with pytest.raises(RulesError, match="bool"):
        load_rules(mask_all_spares_mt="yes")
    assert load_rules(mask_all_spares_mt=True).version != load_rules().version
    assert load_rules().version == load_rules().version
