# ruff: noqa: E501  (the sample reproduces the ANS file's long lines as they are)
"""The liste blanche: the ANS XML format (reference mssante.md §1.1), DN normalisation (IN-9,
IN-10), and a refresh that never makes things worse (IN-18, IN-19)."""

from __future__ import annotations

from pathlib import Path

import pytest

from parcours.messagerie.listeblanche import (
    Entry,
    ListeBlancheError,
    ListeBlancheSource,
    normalise_dn,
    parse,
    to_xml,
)

# The shape of the ANS file (element names, namespace, one <Domaine> per (domain, DN) pair),
# with the irregularities the reference found in the real list: a domain listed with two
# server certificates, spaces after commas, L= instead of ST=.
ANS_SAMPLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema">
  <DateDeGeneration>2025-03-13T14:54:10Z</DateDeGeneration>
  <ListeDomaines>
    <Domaine>
      <Nom>15-20.mssante.fr</Nom>
      <Description>Domaine de messagerie MSSant\xc3\xa9 du CHNO des Quinze-Vingts</Description>
      <DNCertificatOperateur>CN=smtp-1.sesan.santnet.com,OU=1750048886,O=GIP SESAN,ST=Paris (75),C=FR</DNCertificatOperateur>
      <ResponsableContact>01 00 00 00 00, resp@example.org</ResponsableContact>
      <SupportContact>01 00 00 00 00,
 support@example.org</SupportContact>
      <DateMAJ>2025-01-27T15:49:34Z</DateMAJ>
    </Domaine>
    <Domaine>
      <Nom>15-20.MSSANTE.FR</Nom>
      <Description>Second serveur</Description>
      <DNCertificatOperateur>CN=smtp-2.sesan.santnet.com, OU=1750048886, O=GIP SESAN, ST=Paris (75), C=FR</DNCertificatOperateur>
      <ResponsableContact>x</ResponsableContact>
      <SupportContact>y</SupportContact>
      <DateMAJ>2025-01-27T15:49:34Z</DateMAJ>
    </Domaine>
    <Domaine>
      <Nom>mssante.apicrypt.org</Nom>
      <Description>Apicrypt</Description>
      <DNCertificatOperateur>CN=mss.apicrypt.org,OU=34123456789012,O=APICEM,L=Tourcoing,C=FR</DNCertificatOperateur>
      <ResponsableContact>x</ResponsableContact>
      <SupportContact>y</SupportContact>
      <DateMAJ>2024-11-02T10:00:00Z</DateMAJ>
    </Domaine>
  </ListeDomaines>
</ListeBlancheMSSante>
"""
DN1 = "CN=smtp-1.sesan.santnet.com,OU=1750048886,O=GIP SESAN,ST=Paris (75),C=FR"
DN2 = "CN=smtp-2.sesan.santnet.com,OU=1750048886,O=GIP SESAN,ST=Paris (75),C=FR"


def test_the_ans_format_is_read_with_repeated_domains_and_irregular_dns() -> None:
    liste = parse(ANS_SAMPLE)
    assert liste.generated_at is not None and liste.generated_at.year == 2025
    assert len(liste.entries) == 3
    assert liste.domains == {"15-20.mssante.fr", "mssante.apicrypt.org"}
    # IN-9: both servers of a multi-server operator are accepted for the domain.
    assert liste.allows("15-20.mssante.fr", DN1)
    assert liste.allows("15-20.mssante.fr", DN2)
    # IN-10: a certificate's RFC 4514 string comes in the reverse order, other spacing/case.
    assert liste.allows(
        "15-20.mssante.fr",
        "c=FR,st=Paris (75),o=gip sesan,ou=1750048886,cn=SMTP-1.sesan.santnet.com",
    )
    # IN-5: a certificate allowed for one domain cannot speak for another.
    assert not liste.allows("mssante.apicrypt.org", DN1)
    assert liste.domains_of(DN1) == {"15-20.mssante.fr"}
    assert liste.domains_of("CN=inconnu,O=X,C=FR") == frozenset()


def test_a_truncated_file_missing_its_closing_root_tag_is_still_read() -> None:
    truncated = ANS_SAMPLE.replace(b"</ListeBlancheMSSante>\n", b"")
    assert len(parse(truncated).entries) == 3


@pytest.mark.parametrize(
    ("document", "needle"),
    [
        (b"<html>captive portal</html>", "racine"),
        (b"not xml at all <", "illisible"),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
            b'<ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema">&a;'
            b"</ListeBlancheMSSante>",
            "illisible",
        ),
        (
            b'<ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema">'
            b"<ListeDomaines/></ListeBlancheMSSante>",
            "aucun domaine",
        ),
        (
            b'<ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema"><ListeDomaines>'
            b"<Domaine><Nom>a.mssante.fr</Nom></Domaine></ListeDomaines></ListeBlancheMSSante>",
            "DNCertificatOperateur",
        ),
    ],
)
def test_unusable_documents_are_refused_with_the_reason(document: bytes, needle: str) -> None:
    with pytest.raises(ListeBlancheError) as caught:
        parse(document)
    assert needle in str(caught.value)


def test_dn_normalisation_ignores_order_spacing_and_case_but_not_values() -> None:
    assert normalise_dn("CN=a,OU=1,O=B,C=FR") == normalise_dn(" c=fr , o=b,ou=1 ,CN=A")
    assert normalise_dn("CN=a,OU=1,O=B,C=FR") != normalise_dn("CN=a,OU=2,O=B,C=FR")
    assert normalise_dn(r"CN=a\,b,O=X,C=FR") == frozenset({("CN", "a,b"), ("O", "x"), ("C", "fr")})


def test_written_lists_read_back_identically() -> None:
    entries = [Entry("a.mssante.test", "A & B <test>", DN1), Entry("b.mssante.test", "B", DN2)]
    liste = parse(to_xml(entries))
    assert [(e.domain, e.description, e.dn) for e in liste.entries] == [
        (e.domain, e.description, e.dn) for e in entries
    ]


def test_refresh_swaps_a_valid_list_and_keeps_the_previous_one_otherwise(tmp_path: Path) -> None:
    served = {"data": ANS_SAMPLE}
    cache = tmp_path / "cache.xml"
    source = ListeBlancheSource(lambda: served["data"], cache=cache)
    assert source.refresh().replaced
    assert source.current.is_listed("mssante.apicrypt.org")
    assert cache.read_bytes() == ANS_SAMPLE

    # IN-18: a domain removed from a new valid list is refused from then on, no restart.
    without = ANS_SAMPLE.split(b"<Domaine>\n      <Nom>mssante.apicrypt.org")[0]
    served["data"] = without + b"</ListeDomaines></ListeBlancheMSSante>"
    assert source.refresh().replaced
    assert not source.current.is_listed("mssante.apicrypt.org")

    # IN-19: an invalid download keeps the list in force and says why.
    served["data"] = b"<ListeBlancheMSSante"
    outcome = source.refresh()
    assert not outcome.replaced and outcome.reason and "illisible" in outcome.reason
    assert source.current.is_listed("15-20.mssante.fr")
    assert source.last_error == outcome.reason

    # A list that lost most of its domains is presumed truncated and refused.
    big = [Entry(f"d{i}.mssante.test", "x", f"CN=s{i},O=X,C=FR") for i in range(10)]
    served["data"] = to_xml(big)
    assert source.refresh().replaced
    served["data"] = to_xml(big[:3])
    shrunk = source.refresh()
    assert not shrunk.replaced and "tronquée" in (shrunk.reason or "")
    assert len(source.current.domains) == 10

    # A restart while the source is down starts from the last good copy on disk.
    def down() -> bytes:
        raise OSError("réseau indisponible")

    restarted = ListeBlancheSource(down, cache=cache)
    assert not restarted.refresh().replaced
    assert len(restarted.current.domains) == 10


def test_no_list_at_all_is_an_explicit_error(tmp_path: Path) -> None:
    source = ListeBlancheSource(lambda: b"garbage", cache=tmp_path / "none.xml")
    source.refresh()
    with pytest.raises(ListeBlancheError, match="Aucune liste blanche"):
        _ = source.current
