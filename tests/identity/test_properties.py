"""Property tests: generated identifiers are valid, and every one-character typo is caught.

Why the typo property must hold exactly:

* INS: changing one digit of the 13-character number changes it by ±d·10^k (1 ≤ d ≤ 9), never
  a multiple of the prime 97; changing a key digit changes the key, which is a function of
  the number. Corsica: 2A/2B weigh 19/18 in the department field, so 2A↔2B or 2A/2B↔2d changes
  the number by ±(1..11)·10^6, again not a multiple of 97; letters anywhere else are refused.
* Luhn (RPPS, ADELI, FINESS, SIRET): a single-digit substitution changes the weighted sum by
  a non-zero amount below 10 in absolute value (the doubling map 0..9 → 0,2,4,6,8,1,3,5,7,9
  is a permutation), so the sum leaves 0 mod 10.
* The one documented exception: ADELI and FINESS key Corsica as "20" for both 2A and 2B
  ([assumption], see ``parcours.identity._checks.corsica_as_digits``), so the swap A↔B in the
  department is accepted. The tests pin that blind spot rather than hide it.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from parcours.identity import (
    ADELI,
    FINESS,
    INS,
    RPPS,
    SIRET,
    IdentifierError,
    IdNatPS,
    IdNatStruct,
)

DIGITS = "0123456789"
WITH_CORSICA = DIGITS + "AB"

seeds = st.integers(min_value=0, max_value=2**64 - 1)
departments = st.sampled_from(["35", "2A", "2B", "01", "29", "56", "99", "974", "976"])
two_char_departments = st.sampled_from(["35", "2A", "2B", "01", "22", "29", "56", "75", "97"])


def corruptions(value: str, alphabet: str) -> list[tuple[int, str]]:
    """Every (position, corrupted string) replacing one character by another of ``alphabet``."""
    return [
        (index, value[:index] + char + value[index + 1 :])
        for index in range(len(value))
        for char in alphabet
        if char != value[index]
    ]


def assert_all_rejected(parse: Callable[[str], object], corrupted: list[tuple[int, str]]) -> None:
    for _, candidate in corrupted:
        try:
            parse(candidate)
        except IdentifierError:
            continue
        raise AssertionError(f"typo not detected: {candidate!r}")


@settings(max_examples=200)
@given(seed=seeds, department=departments, sex=st.sampled_from([None, 1, 2, 7, 8]))
def test_ins_generated_parse_and_every_typo_fails(
    seed: int, department: str, sex: int | None
) -> None:
    ins = INS.generate(random.Random(seed), sex=sex, department=department)
    assert INS.parse(ins.value) == ins
    assert INS.parse(" ".join(ins.value)) == ins
    assert INS.compute_key(ins.nir) == ins.key
    assert_all_rejected(INS.parse, corruptions(ins.value, WITH_CORSICA))


@settings(max_examples=200)
@given(seed=seeds)
def test_rpps_generated_parse_and_every_typo_fails(seed: int) -> None:
    rpps = RPPS.generate(random.Random(seed))
    assert RPPS.parse(rpps.value) == rpps
    assert len(rpps.value) == 11 and rpps.value[0] == "1"
    assert_all_rejected(RPPS.parse, corruptions(rpps.value, DIGITS))
    idnat = IdNatPS.from_rpps(rpps)
    assert IdNatPS.parse(idnat.value).rpps == rpps
    assert_all_rejected(IdNatPS.parse, corruptions(idnat.value, DIGITS))


def _corsican_swap(value: str) -> str | None:
    """The one accepted typo of ADELI/FINESS: 2A ↔ 2B."""
    if value[:2] == "2A":
        return "2B" + value[2:]
    if value[:2] == "2B":
        return "2A" + value[2:]
    return None


@settings(max_examples=200)
@given(
    seed=seeds,
    department=two_char_departments,
    profession=st.sampled_from(["60", "70", "91", "92", "93"]),
)
def test_adeli_generated_parse_and_every_typo_fails_but_the_corsican_swap(
    seed: int, department: str, profession: str
) -> None:
    adeli = ADELI.generate(random.Random(seed), department=department, profession=profession)
    assert ADELI.parse(adeli.value) == adeli
    swap = _corsican_swap(adeli.value)
    typos = [c for c in corruptions(adeli.value, WITH_CORSICA) if c[1] != swap]
    assert_all_rejected(ADELI.parse, typos)
    if swap is not None:
        assert ADELI.parse(swap).value == swap  # documented blind spot
    idnat = IdNatPS.from_adeli(adeli)
    assert IdNatPS.parse(idnat.value).adeli == adeli
    idnat_swap = None if swap is None else "0" + swap
    assert_all_rejected(
        IdNatPS.parse,
        [c for c in corruptions(idnat.value, WITH_CORSICA) if c[1] != idnat_swap],
    )


@settings(max_examples=200)
@given(seed=seeds, department=two_char_departments)
def test_finess_generated_parse_and_every_typo_fails_but_the_corsican_swap(
    seed: int, department: str
) -> None:
    finess = FINESS.generate(random.Random(seed), department=department)
    assert FINESS.parse(finess.value) == finess
    assert finess.department == department
    swap = _corsican_swap(finess.value)
    typos = [c for c in corruptions(finess.value, WITH_CORSICA) if c[1] != swap]
    assert_all_rejected(FINESS.parse, typos)
    if swap is not None:
        assert FINESS.parse(swap).value == swap  # documented blind spot
    idnat = IdNatStruct.from_finess(finess)
    assert IdNatStruct.parse(idnat.value).finess == finess
    # Payload typos only: a typo on the type digit itself turns "1…" into another, opaque,
    # type ("2…", "4…") which IdNatStruct accepts by design (kind OTHER).
    idnat_swap = None if swap is None else "1" + swap
    assert_all_rejected(
        IdNatStruct.parse,
        [c for c in corruptions(idnat.value, WITH_CORSICA) if c[0] > 0 and c[1] != idnat_swap],
    )


@settings(max_examples=200)
@given(seed=seeds)
def test_siret_generated_parse_and_every_typo_fails(seed: int) -> None:
    siret = SIRET.generate(random.Random(seed))
    assert SIRET.parse(siret.value) == siret
    assert siret.siren != "356000000"
    assert_all_rejected(SIRET.parse, corruptions(siret.value, DIGITS))
    idnat = IdNatStruct.from_siret(siret)
    assert IdNatStruct.parse(idnat.value).siret == siret
    assert_all_rejected(
        IdNatStruct.parse, [c for c in corruptions(idnat.value, DIGITS) if c[0] > 0]
    )


@given(text=st.text(max_size=20))
def test_parsers_raise_only_identifier_error(text: str) -> None:
    """Arbitrary input either parses or raises IdentifierError, never anything else."""
    for parse in (
        INS.parse,
        RPPS.parse,
        ADELI.parse,
        FINESS.parse,
        SIRET.parse,
        IdNatPS.parse,
        IdNatStruct.parse,
    ):
        try:
            parse(text)
        except IdentifierError as error:
            assert error.reason in {
                "type",
                "empty",
                "length",
                "charset",
                "check_digit",
                "key",
                "department",
                "sex",
                "prefix",
                "oid",
            }
            assert error.value == text
            assert " invalide" in error.message


@given(wrong=st.text(alphabet=DIGITS, max_size=30).filter(lambda t: len(t) not in (0, 11)))
def test_wrong_length_reason(wrong: str) -> None:
    try:
        RPPS.parse(wrong)
    except IdentifierError as error:
        assert error.reason == "length"
        assert f"{len(wrong)} caractère" in error.message
    else:
        raise AssertionError("wrong length accepted")
