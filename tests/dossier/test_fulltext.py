"""Blind full-text index: French analysis, keyed terms, text extraction from hostile inputs.

Written from the requirements: a professional searching "cardiaque" or "medecins" finds a
document that says "cardiaques" or "Médecin"; the stored index never holds a word in clear; a
hostile or corrupt document yields no text rather than an error, a hang or a leaked file.
"""

from __future__ import annotations

import base64
import json
import re
import unicodedata
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parcours.dossier import fulltext
from parcours.dossier.fulltext import analyse, blind_terms, extract_text, query_terms

KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))

CDA_NARRATIVE = "Insuffisance cardiaque décompensée"


def matches(query: str, text: str, key: bytes = KEY) -> bool:
    """The search the index serves: every query term among the document's terms (AND)."""
    terms = query_terms(query, key)
    return bool(terms) and set(terms) <= blind_terms(text, key)


# -- analysis: what must be equivalent ----------------------------------------------------------


@pytest.mark.parametrize(
    "variants",
    [
        ["médecin", "Médecins", "medecins", "MÉDECINS", "me\u0301decin"],  # last: decomposed é
        ["cardiaque", "cardiaques", "CARDIAQUE"],
        ["décompensé", "décompensée", "décompensées", "DECOMPENSEE", "decompense"],
        ["hôpital", "hôpitaux", "HOPITAUX", "hopital"],
        ["œdème", "oedemes", "Œdèmes", "OEDEME"],
        ["allergie", "allergies", "Allergies"],
        ["diabète", "diabete", "DIABÈTE"],
        ["élevé", "élevée", "elevees", "ÉLEVÉS"],
    ],
)
def test_accent_case_and_plural_variants_are_one_term(variants: list[str]) -> None:
    analysed = [analyse(v) for v in variants]
    assert all(len(a) == 1 for a in analysed), analysed
    assert len({a[0] for a in analysed}) == 1, analysed
    assert len({tuple(query_terms(v, KEY)) for v in variants}) == 1


def test_query_matches_document_across_accents_case_and_number() -> None:
    document = "Le patient a été vu par deux médecins pour des troubles cardiaques."
    assert matches("Médecin", document)
    assert matches("medecins cardiaque", document)
    assert matches("TROUBLE CARDIAQUE", document)
    assert not matches("cardiaque pulmonaire", document)  # AND: every term must be there


def test_french_elisions_and_hyphens_split_words() -> None:
    assert matches("insuffisance", "Bilan de l'insuffisance rénale")
    assert matches("insuffisance", "Bilan de l’insuffisance rénale")  # typographic apostrophe
    assert matches("inflammatoire", "traitement anti-inflammatoire")


def test_stop_words_are_ignored() -> None:
    assert analyse("le la les de des du un une et ou à au aux en pour par sur dans") == []
    assert analyse("avec sans ce cet cette ces qui que quoi est sont a ont été") == []
    assert analyse("il elle ils elles nous vous je tu son sa ses leur leurs y ne pas plus") == []
    assert query_terms("le cœur et les poumons", KEY) == query_terms("cœur poumons", KEY)
    # A query of stop words only has nothing to search: it must not match everything.
    assert query_terms("de la", KEY) == []
    assert not matches("de la", "un texte qui contient de la matière")


def test_short_tokens_are_dropped() -> None:
    assert analyse("a b c 1 2 x") == []


def test_query_terms_are_deduplicated_in_order() -> None:
    terms = query_terms("cardiaque médecins cardiaques Médecin rein", KEY)
    assert terms == [
        query_terms("cardiaque", KEY)[0],
        query_terms("médecin", KEY)[0],
        query_terms("rein", KEY)[0],
    ]


# -- blind terms: nothing in clear ----------------------------------------------------------------


def test_terms_are_keyed_hashes_never_the_words() -> None:
    text = "Insuffisance cardiaque décompensée, œdème pulmonaire, créatinine élevée."
    terms = blind_terms(text, KEY)
    assert len(terms) == 7
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in terms)  # 16 bytes, hex
    stored = json.dumps(sorted(terms))  # what a grep of the database would see
    for word in re.findall(r"\w+", text):
        for form in {word, word.lower(), *analyse(word)}:
            assert form not in stored


def test_different_keys_give_disjoint_terms() -> None:
    text = "Insuffisance cardiaque décompensée chez un patient diabétique hypertendu"
    mine, other = blind_terms(text, KEY), blind_terms(text, OTHER_KEY)
    assert len(mine) == len(other) > 0
    assert mine.isdisjoint(other)
    assert not set(query_terms("cardiaque", OTHER_KEY)) <= mine


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError):
        blind_terms("texte", b"short")
    with pytest.raises(ValueError):
        query_terms("texte", b"")


def test_distinct_terms_per_document_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fulltext, "MAX_TERMS_PER_DOCUMENT", 50)
    text = " ".join(f"mot{i}" for i in range(200))
    terms = blind_terms(text, KEY)
    assert len(terms) == 50
    assert set(query_terms("mot0 mot49", KEY)) <= terms  # the first ones are kept


# -- property: any words of a text find that text --------------------------------------------------

FRENCH = "abcdefghijklmnopqrstuvwxyzéèêëàâäîïôöùûüçœæÉÈÀÇŒ0123456789 '’-.,;:!?\n\u0301"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.one_of(st.text(max_size=300), st.text(alphabet=FRENCH, max_size=300)),
    data=st.data(),
)
def test_every_query_made_of_words_of_a_text_matches_it(text: str, data: st.DataObject) -> None:
    words = text.split()
    chosen = data.draw(st.lists(st.sampled_from(words), max_size=5)) if words else []
    query = " ".join(chosen)
    assert set(query_terms(query, KEY)) <= blind_terms(text, KEY)


@settings(max_examples=200)
@given(st.one_of(st.text(max_size=200), st.text(alphabet=FRENCH, max_size=200)))
def test_composed_and_decomposed_spellings_analyse_alike(text: str) -> None:
    nfc, nfd = unicodedata.normalize("NFC", text), unicodedata.normalize("NFD", text)
    assert analyse(nfc) == analyse(nfd)


# -- extraction: plain text -----------------------------------------------------------------------


def test_plain_text_utf8_and_legacy_encodings() -> None:
    assert extract_text("text/plain", "Fièvre à 39°C".encode()) == "Fièvre à 39°C"
    assert extract_text("text/plain; charset=UTF-8", "Œdème".encode()) == "Œdème"
    assert extract_text("text/plain", "Fièvre élevée".encode("latin-1")) == "Fièvre élevée"
    assert extract_text("text/plain; charset=iso-8859-1", "été".encode("latin-1")) == "été"
    assert extract_text("TEXT/PLAIN", b"ok") == "ok"


def test_unknown_types_give_no_text() -> None:
    assert extract_text("image/jpeg", b"\xff\xd8\xff\xe0 Insuffisance cardiaque") == ""
    assert extract_text("application/octet-stream", b"Insuffisance cardiaque") == ""
    assert extract_text("", b"Insuffisance cardiaque") == ""


# -- extraction: CDA R2 ---------------------------------------------------------------------------


def cda(body: str, title: str = "Compte rendu d'hospitalisation") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <id root="1.2.250.1.213.1.1.9" extension="CR-0001"/>
  <code code="11490-0" codeSystem="2.16.840.1.113883.6.1" displayName="CR de sortie"/>
  <title>{title}</title>
  <recordTarget><patientRole><patient><name><family>DUPONT</family></name></patient>
  </patientRole></recordTarget>
  <component>{body}</component>
</ClinicalDocument>""".encode()


STRUCTURED_BODY = f"""<structuredBody>
  <component><section>
    <code code="10164-2" codeSystem="2.16.840.1.113883.6.1"/>
    <title>Histoire de la maladie</title>
    <text><paragraph>{CDA_NARRATIVE}</paragraph>
      <table><tr><td>Créatinine</td><td>élevée</td></tr></table>
      <list><item>Furosémide</item><item>Bisoprolol</item></list></text>
    <component><section>
      <title>Traitement de sortie</title>
      <text>Régime <content styleCode="Bold">hyposodé</content> strict</text>
    </section></component>
  </section></component>
</structuredBody>"""


@pytest.mark.parametrize(
    "content_type",
    ["application/hl7-cda+xml", "text/xml", "application/xml", "application/octet-stream"],
)
def test_cda_title_and_section_narratives_are_extracted(content_type: str) -> None:
    text = extract_text(content_type, cda(STRUCTURED_BODY))
    assert CDA_NARRATIVE in text
    for expected in ("Compte rendu", "Histoire de la maladie", "Traitement de sortie"):
        assert expected in text
    # Adjacent cells and items stay separate words; inline markup does not split words.
    for word in ("Créatinine", "élevée", "Furosémide", "Bisoprolol", "hyposodé"):
        assert word in text.split()
    assert set(query_terms("cardiaque", KEY)) <= blind_terms(text, KEY)
    assert matches("insuffisances cardiaques decompensees", text)
    assert matches("creatinine elevee furosemide", text)


def test_xml_that_is_not_a_cda_is_only_read_when_declared_as_xml() -> None:
    other = b"<note><body>Insuffisance cardiaque</body></note>"
    assert "Insuffisance cardiaque" in extract_text("application/xml", other)
    assert extract_text("application/octet-stream", other) == ""


def test_cda_level_one_with_an_embedded_pdf() -> None:
    pdf = base64.b64encode(minimal_pdf([["Fibrillation auriculaire paroxystique"]])).decode()
    body = f"""<nonXMLBody>
      <text mediaType="application/pdf" representation="B64">{pdf}</text>
    </nonXMLBody>"""
    text = extract_text("text/xml", cda(body))
    assert "Fibrillation auriculaire" in text
    assert matches("fibrillation", text)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol9;</title></ClinicalDocument>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&secret;</title></ClinicalDocument>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument SYSTEM "http://attacker.invalid/cda.dtd">
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>Titre</title></ClinicalDocument>"""


@pytest.mark.parametrize("hostile", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD])
@pytest.mark.parametrize("content_type", ["application/hl7-cda+xml", "application/octet-stream"])
def test_hostile_xml_is_refused_not_expanded(hostile: bytes, content_type: str) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        # A bound far above a legitimate parse: expansion would take minutes and gigabytes.
        assert pool.submit(extract_text, content_type, hostile).result(timeout=30) == ""


@pytest.mark.parametrize(
    "broken",
    [b"<ClinicalDocument xmlns='urn:hl7-org:v3'><title>non ferm", b"<", b"", b"\x00\xff<<"],
)
def test_malformed_xml_gives_no_text(broken: bytes) -> None:
    assert extract_text("text/xml", broken) == ""


# -- extraction: PDF ------------------------------------------------------------------------------


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1252")  # WinAnsiEncoding, declared on the font below
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def minimal_pdf(pages: list[list[str]]) -> bytes:
    """A valid PDF built by hand: Helvetica text, one content stream per page, exact xref."""
    font = 3 + 2 * len(pages)
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(f"{3 + 2 * i} 0 R".encode() for i in range(len(pages)))
        + f"] /Count {len(pages)} >>".encode(),
    ]
    for i, lines in enumerate(pages):
        stream = b"BT /F1 12 Tf 72 720 Td 14 TL " + b" ".join(
            _pdf_string(line) + b" Tj T*" for line in lines
        )
        stream += b" ET"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 {font} 0 R >> >> /Contents {4 + 2 * i} 0 R >>".encode()
        )
        objects.append(f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream")
    objects.append(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    )
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n".encode() + b"0000000000 65535 f \n"
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\n".encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def test_pdf_text_of_every_page_is_extracted() -> None:
    pdf = minimal_pdf(
        [
            ["Compte rendu de consultation", CDA_NARRATIVE],
            ["Traitement : furosémide 40 mg (matin)"],
        ]
    )
    text = extract_text("application/pdf", pdf)
    assert "Insuffisance cardiaque" in text
    assert "décompensée" in text
    assert "furosémide" in text
    assert set(query_terms("cardiaque", KEY)) <= blind_terms(text, KEY)
    assert matches("insuffisances cardiaques decompensees furosemide", text)


def test_pdf_pages_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fulltext, "MAX_PDF_PAGES", 1)
    text = extract_text("application/pdf", minimal_pdf([["premiere page"], ["seconde page"]]))
    assert "premiere" in text
    assert "seconde" not in text


@pytest.mark.parametrize(
    "corrupt",
    [
        b"",
        b"%PDF-1.4\n",
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 9 0 R >> endobj\ntrailer << /Root 1 0 R >>",
        b"not a pdf at all, just words: Insuffisance cardiaque",
        bytes(range(256)) * 8,
    ],
)
def test_corrupt_pdf_gives_no_text(corrupt: bytes) -> None:
    assert extract_text("application/pdf", corrupt) == ""


def test_truncated_pdf_gives_no_text_or_its_words_but_never_raises() -> None:
    pdf = minimal_pdf([["Insuffisance cardiaque"]])
    for cut in (10, len(pdf) // 3, len(pdf) // 2):
        assert extract_text("application/pdf", pdf[:cut]) in ("", "Insuffisance cardiaque")


# -- extraction: FHIR JSON ------------------------------------------------------------------------


def test_fhir_json_narratives_and_attachments() -> None:
    composition = {
        "resourceType": "Composition",
        "title": "Lettre de liaison",
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Insuffisance'
            "</p><p>cardiaque d&#233;compens&#233;e</p></div>",
        },
        "section": [{"title": "Allergies", "code": {"text": "Pénicilline"}}],
    }
    text = extract_text("application/fhir+json", json.dumps(composition).encode())
    assert "Lettre de liaison" in text
    assert "décompensée" in text
    assert "<p>" not in text
    assert matches("insuffisance cardiaque decompensee allergie penicilline", text)

    reference = {
        "resourceType": "DocumentReference",
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(b"Embolie pulmonaire").decode(),
                }
            }
        ],
    }
    assert "Embolie pulmonaire" in extract_text(
        "application/fhir+json", json.dumps(reference).encode()
    )


@pytest.mark.parametrize("bad", [b"{", b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe"])
def test_bad_fhir_json_gives_no_text(bad: bytes) -> None:
    assert extract_text("application/fhir+json", bad) == ""
