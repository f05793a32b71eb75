"""Known vectors, computed by hand in the comments, and precise failure reasons."""

from __future__ import annotations

import dataclasses
import pickle
import random

import pytest

from parcours.identity import (
    ADELI,
    FINESS,
    IDNPS_OID,
    IDNST_OID,
    INS,
    INS_OID_NIA,
    INS_OID_NIR,
    INS_OID_NIR_DEMO,
    INS_OID_NIR_TEST,
    RPPS,
    SIRET,
    IdentifierError,
    IdNatPS,
    IdNatStruct,
)

# --------------------------------------------------------------------------------------------
# INS
# --------------------------------------------------------------------------------------------


def test_ins_key_textbook_vector() -> None:
    # 1234567890123 = 97 × 12,727,504,021 + 86  →  key = 97 − 86 = 11
    assert INS.compute_key("1234567890123") == "11"
    ins = INS.parse("123456789012311")
    assert ins.value == "123456789012311"
    assert str(ins) == "123456789012311"
    assert ins.nir == "1234567890123"
    assert ins.key == "11"


def test_ins_corsica_2a() -> None:
    # 1 85 02 2A 004 123: for the key 2A reads 19 (= "20" − 1,000,000 on the number):
    # 1850219004123 = 97 × 19,074,422,722 + 89  →  key = 97 − 89 = 08
    assert INS.compute_key("185022A004123") == "08"
    assert int("1850220004123") - 1_000_000 == 1850219004123
    ins = INS.parse("1 85 02 2a 004 123 08")
    assert ins.value == "185022A00412308"
    assert ins.department == "2A"


def test_ins_corsica_2b() -> None:
    # 2 91 02 2B 033 045: 2B reads 18 (= "20" − 2,000,000):
    # 2910218033045 = 97 × 30,002,247,763 + 34  →  key = 97 − 34 = 63
    assert INS.compute_key("291022B033045") == "63"
    assert int("2910220033045") - 2_000_000 == 2910218033045
    assert INS.parse("291022B03304563").department == "2B"


def test_ins_key_mismatch_message_is_precise_french() -> None:
    with pytest.raises(IdentifierError) as caught:
        INS.parse("123456789012345")
    error = caught.value
    assert error.identifier_type == "INS"
    assert error.value == "123456789012345"
    assert error.reason == "key"
    assert str(error) == (
        "INS invalide : la clé 45 ne correspond pas au NIR 1234567890123 (clé attendue 11)"
    )


def test_ins_accepts_spaces_and_narrow_no_break_spaces() -> None:
    assert INS.parse(" 1 23 45 67 890 123 11 ").value == "123456789012311"
    assert INS.parse("1\u202f23\u00a045 67 890 123 11").value == "123456789012311"


def test_ins_views() -> None:
    ins = INS.parse("175023523804214")  # computed by INS.with_key in the module's own checks
    assert ins.sex == 1
    assert ins.birth_year == 75
    assert ins.birth_month == 2
    assert ins.department == "35"
    assert ins.formatted == "1 75 02 35 238 042 14"
    overseas = INS.with_key("2880597411012")
    assert overseas.department == "974"


def test_ins_with_key_and_oid() -> None:
    ins = INS.with_key("1234567890123")
    assert ins.value == "123456789012311"
    assert ins.oid == INS_OID_NIR
    assert ins.system == "urn:oid:1.2.250.1.213.1.4.8"
    assert not ins.is_test
    test = INS.parse("123456789012311", oid=INS_OID_NIR_TEST)
    assert test.is_test and test.system == "urn:oid:1.2.250.1.213.1.4.10"
    assert INS.parse("123456789012311", oid=INS_OID_NIR_DEMO).is_test
    nia = INS.parse("123456789012311", oid=INS_OID_NIA)
    assert nia.is_nia and not nia.is_test
    # same matricule, different OID: different identifiers
    assert test != ins


def test_ins_oid_constants() -> None:
    assert INS_OID_NIR == "1.2.250.1.213.1.4.8"
    assert INS_OID_NIA == "1.2.250.1.213.1.4.9"
    assert INS_OID_NIR_TEST == "1.2.250.1.213.1.4.10"
    assert INS_OID_NIR_DEMO == "1.2.250.1.213.1.4.11"


def test_ins_unknown_oid() -> None:
    with pytest.raises(IdentifierError) as caught:
        INS.parse("123456789012311", oid="1.2.3")
    assert caught.value.reason == "oid"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("1234567890123", "length"),  # key missing
        ("12345678901231", "length"),
        ("1234567890123111", "length"),
        ("12345678X012311", "charset"),
        ("12345A789012311", "charset"),  # letter at position 6, not 7
        ("123451A89012311", "charset"),  # A after 1: not a Corsican department
        ("1234567890123A1", "charset"),  # letter in the key
        ("023456789012311", "sex"),
        ("923456789012311", "sex"),
        ("123456789012312", "key"),
    ],
)
def test_ins_reasons(text: str, reason: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        INS.parse(text)
    assert caught.value.reason == reason
    assert caught.value.identifier_type == "INS"
    assert str(caught.value).startswith("INS invalide : ")


def test_ins_accepts_temporary_first_digits() -> None:
    for first in "345678":
        assert INS.with_key(first + "234567890123").sex == int(first)


def test_ins_constructor_is_strict_and_frozen() -> None:
    with pytest.raises(IdentifierError):
        INS("1 23456789012311")
    ins = INS("123456789012311")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ins.value = "x"  # type: ignore[misc]
    assert hash(ins) == hash(INS.parse("123456789012311"))


def test_non_string_input_is_an_identifier_error() -> None:
    with pytest.raises(IdentifierError) as caught:
        RPPS.parse(None)  # type: ignore[arg-type]
    assert caught.value.reason == "type"
    with pytest.raises(IdentifierError):
        INS(123456789012311)  # type: ignore[arg-type]


def test_ins_generate() -> None:
    rng = random.Random(7)
    ins = INS.generate(rng, sex=2, birth_year=1984, department="2B")
    assert ins.sex == 2 and ins.birth_year == 84 and ins.department == "2B"
    assert 1 <= ins.birth_month <= 12
    assert INS.generate(random.Random(1)) == INS.generate(random.Random(1))
    assert INS.generate(random.Random(1), oid=INS_OID_NIR_DEMO).is_test


# --------------------------------------------------------------------------------------------
# RPPS / ADELI / IdNatPS
# --------------------------------------------------------------------------------------------


def test_rpps_luhn_vectors() -> None:
    # 10107350778, from the right, doubling every 2nd digit (d>9 → d−9):
    #   8 + (7·2−9=5) + 7 + (0·2=0) + 5 + (3·2=6) + 7 + (0·2=0) + 1 + (0·2=0) + 1 = 40 ≡ 0
    assert RPPS.parse("101 0735 0778").value == "10107350778"
    # 99700218896 (the ANS DMP examples' test PS): 6+(9·2−9=9)+8+(8·2−9=7)+1+(2·2=4)+0+0+7
    #   +(9·2−9=9)+9 = 60 ≡ 0
    assert RPPS.parse("99700218896").idnat == "899700218896"
    with pytest.raises(IdentifierError) as caught:
        RPPS.parse("10107350779")
    assert caught.value.reason == "check_digit"
    assert "chiffre attendu 8" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "empty"), ("1010735077", "length"), ("1010735077O", "charset")],
)
def test_rpps_reasons(text: str, reason: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        RPPS.parse(text)
    assert caught.value.reason == reason
    assert caught.value.identifier_type == "RPPS"


def test_adeli_vectors() -> None:
    # 87 91 0155 8 (orthophoniste, Haute-Vienne): 8+(5·2−9=1)+5+(1·2=2)+0+(1·2=2)+9+(7·2−9=5)+8
    #   = 40 ≡ 0
    adeli = ADELI.parse("879101558")
    assert (adeli.department, adeli.profession) == ("87", "91")
    assert adeli.idnat == "0879101558"
    # 34 91 0266 5: 5+(6·2−9=3)+6+(2·2=4)+0+(1·2=2)+9+(4·2=8)+3 = 40 ≡ 0
    assert ADELI.parse("34 91 02665").value == "349102665"
    # Corsica, keyed as if 2A were "20": payload 2A600001 → 20600001; from the right, the key
    # slot first, the payload's last digit doubled: (1·2=2)+0+(0·2)+0+(0·2)+6+(0·2)+2 = 10
    # → key (10 − 10 mod 10) mod 10 = 0
    assert ADELI.parse("2a6000010").value == "2A6000010"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("87910155", "length"),
        ("8791015X8", "charset"),
        ("3A9101558", "charset"),
        ("A79101558", "charset"),
        ("206000010", "department"),
        ("879101559", "check_digit"),
    ],
)
def test_adeli_reasons(text: str, reason: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        ADELI.parse(text)
    assert caught.value.reason == reason


def test_idnatps() -> None:
    rpps = RPPS.parse("10107350778")
    idnat = IdNatPS.from_rpps(rpps)
    assert idnat.value == "810107350778" and str(idnat) == "810107350778"
    assert idnat.kind == "RPPS" and idnat.rpps == rpps and idnat.adeli is None
    assert idnat.system == "urn:oid:1.2.250.1.71.4.2.1" and IDNPS_OID == "1.2.250.1.71.4.2.1"
    adeli = IdNatPS.parse("0 879101558")
    assert adeli.kind == "ADELI" and adeli.adeli == ADELI("879101558") and adeli.rpps is None
    assert IdNatPS.from_adeli(ADELI("879101558")) == adeli


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("10107350778", "prefix"),  # bare RPPS: the type digit is required
        ("910107350778", "prefix"),
        ("81010735077", "length"),
        ("0810107350778", "length"),
        ("810107350779", "check_digit"),
        ("0879101559", "check_digit"),
    ],
)
def test_idnatps_reasons(text: str, reason: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        IdNatPS.parse(text)
    assert caught.value.reason == reason
    assert caught.value.identifier_type == "IdNatPS"


# --------------------------------------------------------------------------------------------
# FINESS / SIRET / IdNatStruct
# --------------------------------------------------------------------------------------------


def test_finess_vectors() -> None:
    # CHU de Rennes, 35 000 517 9: 9+(7·2−9=5)+1+(5·2−9=1)+0+(0·2=0)+0+(5·2−9=1)+3 = 20 ≡ 0
    assert FINESS.parse("35 000 517 9").value == "350005179"
    # 590064036 (ANS example): 6+(3·2=6)+0+(4·2=8)+6+(0·2=0)+0+(9·2−9=9)+5 = 40 ≡ 0
    assert FINESS.parse("590064036").idnat == "1590064036"
    # A made-up Rennes-style number: 35 000 000 ?: (0·2)…+(5·2−9=1)+3 = 4 → key 6
    assert FINESS.parse("350000006").department == "35"
    # Corsica keyed as "20": 2A 000 001 ?: (1·2=2)+…+2 = 4 → key 6
    assert FINESS.parse("2A0000016").department == "2A"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("35000517", "length"),
        ("3500051790", "length"),
        ("35000517A", "charset"),
        ("350005178", "check_digit"),
        ("200000016", "department"),
    ],
)
def test_finess_reasons(text: str, reason: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        FINESS.parse(text)
    assert caught.value.reason == reason
    assert caught.value.identifier_type == "FINESS"


def test_siret_vectors() -> None:
    # 732 829 320 00074: 4+(7·2=14−9=5)+0+(0)+0+(0)+2+(3·2=6)+9+(2·2=4)+8+(2·2=4)+3+(7·2−9=5)
    #   = 50 ≡ 0
    siret = SIRET.parse("732 829 320 00074")
    assert (siret.siren, siret.nic) == ("732829320", "00074")
    assert siret.idnat == "373282932000074"
    with pytest.raises(IdentifierError) as caught:
        SIRET.parse("73282932000075")
    assert caught.value.reason == "check_digit"


def test_siret_la_poste() -> None:
    # Head office 35600000000048 is Luhn-valid: 8+(4·2=8)+0…+(6·2−9=3)+5+(3·2=6) = 30 ≡ 0,
    # although its digit sum 3+5+6+4+8 = 26 is not a multiple of 5.
    assert SIRET.parse("356 000 000 00048").siren == "356000000"
    # Other La Poste establishments: digit sum multiple of 5, Luhn not required.
    # 35600000000001: sum 3+5+6+1 = 15 ≡ 0 (mod 5); Luhn sum 1+3+5+6 = 15, not ≡ 0 (mod 10).
    assert SIRET.parse("35600000000001").nic == "00001"
    with pytest.raises(IdentifierError) as caught:
        SIRET.parse("35600000000002")  # sum 16
    assert caught.value.reason == "check_digit"
    assert "La Poste" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [("7328293200007", "length"), ("7328293200007A", "charset"), ("", "empty")],
)
def test_siret_reasons(text: str, reason: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        SIRET.parse(text)
    assert caught.value.reason == reason


def test_idnatstruct() -> None:
    finess = IdNatStruct.parse("1350005179")
    assert finess.kind == "FINESS" and finess.finess == FINESS("350005179")
    assert finess.siret is None
    assert finess.system == "urn:oid:1.2.250.1.71.4.2.2" and IDNST_OID == "1.2.250.1.71.4.2.2"
    siret = IdNatStruct.from_siret(SIRET("73282932000074"))
    assert siret.value == "373282932000074" and siret.kind == "SIRET"
    assert siret.siret == SIRET("73282932000074")
    assert IdNatStruct.from_finess(FINESS("350005179")) == finess
    other = IdNatStruct.parse("4 10107350778 01")
    assert other.kind == "OTHER" and other.finess is None and other.siret is None
    assert other.value == "41010735077801"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("X350005179", "prefix"),
        ("135000517", "length"),
        ("1350005178", "check_digit"),
        ("37328293200007", "length"),
        ("373282932000075", "check_digit"),
        ("4", "length"),
        ("4ABC*", "charset"),
    ],
)
def test_idnatstruct_reasons(text: str, reason: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        IdNatStruct.parse(text)
    assert caught.value.reason == reason
    assert caught.value.identifier_type == "IdNatStruct"


def test_error_is_value_error_and_pickles() -> None:
    with pytest.raises(ValueError):
        FINESS.parse("350005178")
    try:
        FINESS.parse("350005178")
    except IdentifierError as error:
        clone = pickle.loads(pickle.dumps(error))
        assert (clone.identifier_type, clone.value, clone.reason, clone.message) == (
            error.identifier_type,
            error.value,
            error.reason,
            error.message,
        )


def test_generators_are_deterministic() -> None:
    for make in (
        lambda r: RPPS.generate(r),
        lambda r: ADELI.generate(r, department="35", profession="91"),
        lambda r: FINESS.generate(r, department="35"),
        lambda r: SIRET.generate(r),
    ):
        assert make(random.Random(42)) == make(random.Random(42))
    assert RPPS.generate(random.Random(3)).value.startswith("10")
    assert ADELI.generate(random.Random(3), profession="91").profession == "91"
    siret = SIRET.generate(random.Random(3))
    assert SIRET.generate(random.Random(4), siren=siret.siren).siren == siret.siren
