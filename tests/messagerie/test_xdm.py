"""IHE XDM archives: layout, ebRIM metadata, X-MSS values, and every refusal of ``read_xdm``.

Oracles come from the specifications, not from the module: the scheme UUIDs are written out
here from IHE ITI TF-3 §4.2.5, the layout from ITI TF-1 §16 / ITI TF-2b §3.32 and reference
``mssante.md`` §4.3, the INS OIDs from reference §0.
"""

from __future__ import annotations

import hashlib
import io
import stat
import struct
import warnings
import zipfile
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from xml.etree.ElementTree import Element

import pytest
from defusedxml import ElementTree as SafeET
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parcours.identity.errors import IdentifierError
from parcours.identity.ins import INS
from parcours.messagerie.xdm import (
    Code,
    XdmAuthor,
    XdmDocument,
    XdmError,
    build_xdm,
    read_cda_header,
    read_xdm,
    x_mss_headers_for,
)

# -- spec constants (ITI TF-3 §4.2.5, ebRIM 3.0) ----------------------------------------------

LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
DOCUMENT_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SUBMISSION_SET = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
DE_SCHEMES = {
    "author": "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d",
    "classCode": "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a",
    "confidentialityCode": "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f",
    "formatCode": "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d",
    "healthcareFacilityTypeCode": "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1",
    "practiceSettingCode": "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead",
    "typeCode": "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983",
}
DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SS_SCHEMES = {
    "author": "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d",
    "contentTypeCode": "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500",
}
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"

INS_NIR, INS_NIA, INS_NIR_TEST = (
    "1.2.250.1.213.1.4.8",
    "1.2.250.1.213.1.4.9",
    "1.2.250.1.213.1.4.10",
)
LOINC, TRE_A03 = "2.16.840.1.113883.6.1", "1.2.250.1.213.1.1.4.1"

PATIENT = INS.with_key("1800175123456").value  # a well-formed NIR: key computed, not invented
SOURCE_ID = "1.2.250.1.999.7.1"
WHEN = datetime(2024, 5, 31, 14, 30, 0, tzinfo=UTC)
AUTHOR = XdmAuthor(
    idnps="810002345678",
    family_name="MARTIN",
    given_name="Élise",
    institution_idnst="1350000014",
    institution_name="CHU de Rennes",
    specialty=Code("G15_10/SM26", "Qualifié en médecine générale", "1.2.250.1.213.1.1.4.5"),
)
FACILITY = Code("SA01", "Etablissement public de santé", "1.2.250.1.71.4.2.4")
PRACTICE = Code("ETABLISSEMENT", "Etablissement de santé", "1.2.250.1.213.1.1.4.9")
CONTENT_TYPE = Code("04", "Hospitalisation de jour", "1.2.250.1.213.2.2")
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def cda(
    *,
    ins: str | None = PATIENT,
    oid: str = INS_NIR,
    code: str = "11488-4",
    traits: bool = True,
) -> bytes:
    """A small CDA R2 consultation note (header elements required by CDA R2 §4.2)."""
    identifier = f'<id root="{oid}" extension="{ins}"/>' if ins else ""
    patient = (
        '<patient><name><given>Jean</given><family qualifier="BR">DUPONT</family></name>'
        '<administrativeGenderCode code="M" codeSystem="2.16.840.1.113883.5.1"/>'
        '<birthTime value="19800115"/></patient>'
        if traits
        else "<patient><name><family>DUPONT</family></name></patient>"
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="1.2.250.1.213.1.1.1.1"/>
  <id root="1.2.250.1.999.7.2.1"/>
  <code code="{code}" codeSystem="{LOINC}" displayName="Note de consultation"/>
  <title>Compte rendu de consultation</title>
  <effectiveTime value="20240531143000+0200"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <recordTarget><patientRole>{identifier}
    <id root="1.2.250.1.999.7.3" extension="IPP-42"/>{patient}</patientRole></recordTarget>
  <author><time value="20240531143000+0200"/><assignedAuthor>
    <id root="1.2.250.1.71.4.2.1" extension="810002345678"/></assignedAuthor></author>
  <custodian><assignedCustodian><representedCustodianOrganization>
    <id root="1.2.250.1.71.4.2.2" extension="1350000014"/>
  </representedCustodianOrganization></assignedCustodian></custodian>
  <component><nonXMLBody><text mediaType="text/plain">Examen normal.</text></nonXMLBody>
  </component>
</ClinicalDocument>
""".encode()


def document(content: bytes, mime: str, unique_id: str, **overrides: object) -> XdmDocument:
    values: dict[str, object] = {
        "content": content,
        "mime_type": mime,
        "unique_id": unique_id,
        "title": "Compte rendu de consultation",
        "type_code": Code("11488-4", "Note de consultation", LOINC),
        "class_code": Code("10", "Compte rendu", TRE_A03),
        "creation_time": WHEN,
        "author": AUTHOR,
        "healthcare_facility_type": FACILITY,
        "practice_setting": PRACTICE,
    }
    values.update(overrides)
    return XdmDocument(**values)  # type: ignore[arg-type]


CDA_DOC = document(cda(), "text/xml", "1.2.250.1.999.7.2.1")
PDF_DOC = document(PDF, "application/pdf", "1.2.250.1.999.7.2.2", title="Version PDF")


def build(documents: list[XdmDocument] | None = None, **overrides: object) -> bytes:
    arguments: dict[str, object] = {
        "patient_ins": PATIENT,
        "source_id": SOURCE_ID,
        "author": AUTHOR,
        "content_type": CONTENT_TYPE,
        "sender": "CHU de Rennes, service de cardiologie",
        "submission_set_unique_id": "1.2.250.1.999.7.9.1",
        "submission_time": WHEN,
    }
    arguments.update(overrides)
    return build_xdm(documents or [CDA_DOC, PDF_DOC], **arguments)  # type: ignore[arg-type]


def rewrite(
    data: bytes,
    *,
    drop: set[str] = frozenset(),  # type: ignore[assignment]
    replace_with: dict[str, bytes] | None = None,
    add: dict[str, bytes] | None = None,
) -> bytes:
    """A copy of the archive ``data`` with entries removed, replaced or added."""
    replace_with = replace_with or {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            if info.filename in drop:
                continue
            content = replace_with.get(info.filename, source.read(info))
            target.writestr(info, content, compress_type=zipfile.ZIP_DEFLATED)
        for name, content in (add or {}).items():
            target.writestr(name, content)
    return out.getvalue()


def metadata_tree(data: bytes) -> Element:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return SafeET.fromstring(archive.read("IHE_XDM/SUBSET01/METADATA.XML"))


def zip_of(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return out.getvalue()


def refused(data: bytes, **limits: int) -> XdmError:
    with pytest.raises(XdmError) as caught:
        read_xdm(data, **limits)
    assert caught.value.message and str(caught.value) == caught.value.message
    return caught.value


def rim(tag: str) -> str:
    return f"{{{RIM}}}{tag}"


# -- round trip and layout ---------------------------------------------------------------------


def test_round_trip_cda_and_pdf() -> None:
    package = read_xdm(build())

    assert package.documents == (CDA_DOC, PDF_DOC)
    subset = package.submission_set
    assert subset.directory == "IHE_XDM/SUBSET01"
    assert subset.source_id == SOURCE_ID
    assert subset.unique_id == "1.2.250.1.999.7.9.1"
    assert subset.patient_id == f"{PATIENT}^^^&{INS_NIR}&ISO^NH"
    assert subset.patient_ins == (PATIENT, INS_NIR)
    assert subset.content_type == CONTENT_TYPE
    assert subset.author == AUTHOR
    assert subset.submission_time == WHEN
    assert [e.path for e in package.entries] == [
        "IHE_XDM/SUBSET01/DOC0001.XML",
        "IHE_XDM/SUBSET01/DOC0002.PDF",
    ]
    assert all(e.patient_id == subset.patient_id for e in package.entries)
    assert all(e.entry_uuid.startswith("urn:uuid:") for e in package.entries)
    assert "CHU de Rennes" in (package.readme or "")


def test_layout_is_the_ihe_media_layout() -> None:
    with zipfile.ZipFile(io.BytesIO(build())) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        index = archive.read("INDEX.HTM").decode("utf-8")
        readme = archive.read("README.TXT").decode("utf-8")

    assert set(names) == {
        "README.TXT",
        "INDEX.HTM",
        "IHE_XDM/SUBSET01/METADATA.XML",
        "IHE_XDM/SUBSET01/DOC0001.XML",
        "IHE_XDM/SUBSET01/DOC0002.PDF",
    }
    for name in names:
        for part in name.split("/"):
            stem, _, extension = part.partition(".")
            assert part == part.upper() and len(stem) <= 8 and len(extension) <= 3

    class Links(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.hrefs: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "a":
                self.hrefs.append(dict(attrs)["href"] or "")

    links = Links()
    links.feed(index)
    assert "IHE_XDM/SUBSET01/DOC0001.XML" in links.hrefs
    assert "IHE_XDM/SUBSET01/DOC0002.PDF" in links.hrefs
    assert "CHU de Rennes, service de cardiologie" in readme
    assert PATIENT not in readme  # nothing about the patient in what anyone can read first


def test_metadata_carries_the_ebrim_vocabulary() -> None:
    root = metadata_tree(build())
    assert root.tag == f"{{{LCM}}}SubmitObjectsRequest"
    objects = root.find(rim("RegistryObjectList"))
    assert objects is not None

    (package,) = objects.findall(rim("RegistryPackage"))
    set_id = package.get("id")
    nodes = [
        c
        for c in objects.findall(rim("Classification"))
        if c.get("classificationNode") == SUBMISSION_SET
    ]
    assert [c.get("classifiedObject") for c in nodes] == [set_id]
    set_ids = {
        e.get("identificationScheme"): e.get("value")
        for e in package.iter(rim("ExternalIdentifier"))
    }
    assert set_ids == {
        SS_UNIQUE_ID: "1.2.250.1.999.7.9.1",
        SS_SOURCE_ID: SOURCE_ID,
        SS_PATIENT_ID: f"{PATIENT}^^^&{INS_NIR}&ISO^NH",
    }
    assert {c.get("classificationScheme") for c in package.findall(rim("Classification"))} == set(
        SS_SCHEMES.values()
    )

    entries = objects.findall(rim("ExtrinsicObject"))
    assert [e.get("objectType") for e in entries] == [DOCUMENT_ENTRY, DOCUMENT_ENTRY]
    assert [e.get("mimeType") for e in entries] == ["text/xml", "application/pdf"]
    for entry, expected, name in zip(
        entries, (CDA_DOC, PDF_DOC), ("DOC0001.XML", "DOC0002.PDF"), strict=True
    ):
        slots = {
            s.get("name"): [v.text for v in s.iter(rim("Value"))]
            for s in entry.findall(rim("Slot"))
        }
        assert slots["hash"] == [hashlib.sha1(expected.content).hexdigest()]
        assert slots["size"] == [str(len(expected.content))]
        assert slots["URI"] == [name]
        assert slots["creationTime"] == ["20240531143000"]
        assert slots["languageCode"] == ["fr-FR"]
        assert slots["sourcePatientId"] == [f"{PATIENT}^^^&{INS_NIR}&ISO^NH"]
        classifications = {
            c.get("classificationScheme"): c for c in entry.findall(rim("Classification"))
        }
        assert set(classifications) == set(DE_SCHEMES.values())
        for classification in classifications.values():
            assert classification.get("classifiedObject") == entry.get("id")
        class_code = classifications[DE_SCHEMES["classCode"]]
        assert class_code.get("nodeRepresentation") == "10"
        assert [v.text for v in class_code.iter(rim("Value"))] == [TRE_A03]
        type_code = classifications[DE_SCHEMES["typeCode"]]
        assert type_code.get("nodeRepresentation") == "11488-4"
        assert [v.text for v in type_code.iter(rim("Value"))] == [LOINC]
        author = classifications[DE_SCHEMES["author"]]
        author_slots = {
            s.get("name"): [v.text for v in s.iter(rim("Value"))]
            for s in author.findall(rim("Slot"))
        }
        assert author_slots["authorPerson"] == [
            "810002345678^MARTIN^Élise^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"
        ]
        assert author_slots["authorInstitution"] == [
            "CHU de Rennes^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1350000014"
        ]
        identifiers = {
            e.get("identificationScheme"): e.get("value")
            for e in entry.findall(rim("ExternalIdentifier"))
        }
        assert identifiers == {
            DE_PATIENT_ID: f"{PATIENT}^^^&{INS_NIR}&ISO^NH",
            DE_UNIQUE_ID: expected.unique_id,
        }

    associations = objects.findall(rim("Association"))
    assert {a.get("associationType") for a in associations} == {HAS_MEMBER}
    assert {a.get("sourceObject") for a in associations} == {set_id}
    assert {a.get("targetObject") for a in associations} == {e.get("id") for e in entries}
    for association in associations:
        assert [v.text for v in association.iter(rim("Value"))] == ["Original"]


def test_build_refuses_unusable_input() -> None:
    with pytest.raises(IdentifierError):
        build(patient_ins=PATIENT[:-2] + "00")  # wrong key
    with pytest.raises(ValueError, match="fuseau"):
        build([replace(CDA_DOC, creation_time=datetime(2024, 5, 31))])
    with pytest.raises(ValueError, match="même identifiant"):
        build([CDA_DOC, replace(PDF_DOC, unique_id=CDA_DOC.unique_id)])
    with pytest.raises(ValueError, match="contrôle"):
        build([replace(CDA_DOC, title="ligne 1\nligne 2")])
    with pytest.raises(ValueError, match="OID"):
        build(source_id="pas-un-oid")
    with pytest.raises(ValueError, match="au moins un document"):
        build_xdm(
            [],
            patient_ins=PATIENT,
            source_id=SOURCE_ID,
            author=None,
            content_type=CONTENT_TYPE,
            sender="x",
        )


# -- X-MSS headers from the CDA (reference §4.2) -----------------------------------------------


def test_x_mss_headers_for_a_cda_with_qualified_ins() -> None:
    assert x_mss_headers_for(read_xdm(build())) == {"X-MSS-CODECDA": "11488-4", "X-MSS-INS": "O"}


def test_x_mss_headers_absent_without_cda() -> None:
    assert x_mss_headers_for(read_xdm(build([PDF_DOC]))) == {}
    not_cda = document(b"<html/>", "text/xml", "1.2.250.1.999.7.2.5")
    assert x_mss_headers_for([not_cda, PDF_DOC]) == {}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (cda(), "O"),
        (cda(oid=INS_NIR_TEST), "O"),
        (cda(ins=INS.with_key("3800175123456", oid=INS_NIA).value, oid=INS_NIA), "O"),
        (cda(ins=None), "N"),  # only a local IPP
        (cda(oid="1.2.250.1.999.1"), "N"),  # a matricule under a non-INS OID
        (cda(ins=PATIENT[:-2] + "00"), "N"),  # key does not match
        (cda(traits=False), "N"),  # INS without the identity traits
    ],
)
def test_x_mss_ins_flag(content: bytes, expected: str) -> None:
    headers = x_mss_headers_for([document(content, "text/xml", "1.2.250.1.999.7.2.3")])
    assert headers["X-MSS-INS"] == expected
    assert headers["X-MSS-CODECDA"] == "11488-4"


def test_x_mss_several_cda() -> None:
    documents = [
        document(cda(code="11488-4"), "text/xml", "1.2.250.1.999.7.2.3"),
        document(cda(code="34133-9", ins=None), "text/xml", "1.2.250.1.999.7.2.4"),
        document(cda(code="11488-4"), "text/xml", "1.2.250.1.999.7.2.5"),
        PDF_DOC,
    ]
    # Comma-separated (reference §4.2, separator still an open point), no duplicate; one CDA
    # without INS is enough for "N".
    assert x_mss_headers_for(documents) == {"X-MSS-CODECDA": "11488-4,34133-9", "X-MSS-INS": "N"}


def test_cda_header_refuses_entities() -> None:
    hostile = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]>'
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><code code="&a;"/></ClinicalDocument>'
    )
    assert read_cda_header(hostile) is None


# -- refusals ----------------------------------------------------------------------------------


def test_refuses_what_is_not_a_zip() -> None:
    assert refused(b"Bonjour, ceci n'est pas une archive").code == "not_zip"


def test_refuses_missing_metadata() -> None:
    data = rewrite(build(), drop={"IHE_XDM/SUBSET01/METADATA.XML"})
    assert refused(data).code == "metadata_missing"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("IHE_XDM/SUBSET01/../../../etc/cron.d/x", "path_traversal"),
        ("../README.TXT", "path_traversal"),
        ("/etc/passwd", "absolute_path"),
        ("C:/Windows/system.ini", "absolute_path"),
        ("IHE_XDM\\SUBSET01\\DOC0009.XML", "backslash"),
        ("IHE_XDM//SUBSET01/DOC0009.XML", "invalid_path"),
        ("IHE_XDM/SUBSET01/DOCUMENT0009.XML", "not_8_3"),
        ("IHE_XDM/SUBSET01/doc0009.xml", "not_8_3"),
        ("IHE_XDM/SUBSET01/DOC0009.XMLX", "not_8_3"),
        ("ihe_xdm/SUBSET01/DOC0009.XML", "not_8_3"),
    ],
)
def test_refuses_unsafe_names(name: str, code: str) -> None:
    error = refused(rewrite(build(), add={name: b"x"}))
    assert error.code == code
    assert error.member == name


def test_refuses_a_uri_leaving_the_subset() -> None:
    with zipfile.ZipFile(io.BytesIO(build())) as archive:
        metadata = archive.read("IHE_XDM/SUBSET01/METADATA.XML")
    hostile = metadata.replace(b">DOC0002.PDF<", b">../../README.TXT<")
    error = refused(rewrite(build(), replace_with={"IHE_XDM/SUBSET01/METADATA.XML": hostile}))
    assert error.code == "path_traversal"


def test_refuses_a_document_missing_from_the_archive() -> None:
    error = refused(rewrite(build(), drop={"IHE_XDM/SUBSET01/DOC0002.PDF"}))
    assert error.code == "document_missing"
    assert "DOC0002.PDF" in error.message


def test_refuses_a_hash_mismatch() -> None:
    tampered = PDF.replace(b"trailer", b"TRAILER")  # same size, other bytes
    error = refused(rewrite(build(), replace_with={"IHE_XDM/SUBSET01/DOC0002.PDF": tampered}))
    assert error.code == "hash_mismatch"


def test_refuses_a_size_mismatch() -> None:
    error = refused(rewrite(build(), replace_with={"IHE_XDM/SUBSET01/DOC0002.PDF": PDF + b"x"}))
    assert error.code == "size_mismatch"


def test_refuses_unparseable_metadata() -> None:
    data = rewrite(build(), replace_with={"IHE_XDM/SUBSET01/METADATA.XML": b"<lcm:Submit"})
    assert refused(data).code == "metadata_unparseable"


def test_refuses_entity_expansion_in_metadata() -> None:
    laughs = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0">
&lol3;</lcm:SubmitObjectsRequest>"""
    data = rewrite(build(), replace_with={"IHE_XDM/SUBSET01/METADATA.XML": laughs})
    assert refused(data).code == "metadata_forbidden"


def test_refuses_external_entities_in_metadata() -> None:
    xxe = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0">
&x;</lcm:SubmitObjectsRequest>"""
    data = rewrite(build(), replace_with={"IHE_XDM/SUBSET01/METADATA.XML": xxe})
    assert refused(data).code == "metadata_forbidden"


def test_refuses_metadata_for_another_patient() -> None:
    root = metadata_tree(build())
    other = INS.with_key("2850275123456").value
    entry = root.find(f"{rim('RegistryObjectList')}/{rim('ExtrinsicObject')}")
    assert entry is not None
    for identifier in entry.findall(rim("ExternalIdentifier")):
        if identifier.get("identificationScheme") == DE_PATIENT_ID:
            identifier.set("value", f"{other}^^^&{INS_NIR}&ISO^NH")
    hostile = SafeET.tostring(root, encoding="UTF-8")
    data = rewrite(build(), replace_with={"IHE_XDM/SUBSET01/METADATA.XML": hostile})
    assert refused(data).code == "patient_mismatch"


def _set_general_purpose_flag(data: bytes, bit: int) -> bytes:
    """Raise ``bit`` in every local header (offset 6) and central record (offset 8)."""
    patched = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (start := patched.find(signature, start)) != -1:
            (flags,) = struct.unpack_from("<H", patched, start + offset)
            struct.pack_into("<H", patched, start + offset, flags | bit)
            start += 4
    return bytes(patched)


def test_refuses_encrypted_members() -> None:
    data = _set_general_purpose_flag(zip_of({"README.TXT": b"x"}), 0x1)
    assert refused(data).code == "encrypted"


def test_refuses_a_zip_bomb_from_the_headers() -> None:
    bomb = zip_of({"README.TXT": b"x", "IHE_XDM/SUBSET01/DOC0001.XML": b"\0" * (4 * 1024 * 1024)})
    assert len(bomb) < 20_000  # 4 MiB of zeros deflates to a few KiB
    assert refused(bomb).code == "compression_ratio"


def test_refuses_an_archive_larger_than_the_limit() -> None:
    assert refused(build(), max_total_bytes=2_000).code == "too_large"


def test_refuses_a_member_bigger_than_its_header_says() -> None:
    # The central directory claims 10 bytes for 1 MiB of content: the reader must stop at the
    # announced size instead of trusting the stream, and refuse the member.
    honest = zip_of({"IHE_XDM/SUBSET01/METADATA.XML": b"<" * (1024 * 1024)})
    patched = bytearray(honest)
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        position = patched.find(signature)
        struct.pack_into("<I", patched, position + offset, 10)
    error = refused(bytes(patched))
    assert error.code in ("too_large", "corrupt")


def test_refuses_too_many_files() -> None:
    assert refused(build(), max_files=3).code == "too_many_files"


def test_refuses_duplicate_entries() -> None:
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it writes
        with zipfile.ZipFile(out, "w") as archive:
            archive.writestr("README.TXT", b"a")
            archive.writestr("README.TXT", b"b")
    assert refused(out.getvalue()).code == "duplicate_entry"


def test_refuses_symbolic_links() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        info = zipfile.ZipInfo("IHE_XDM/SUBSET01/DOC0001.XML")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, b"/etc/passwd")
    assert refused(out.getvalue()).code == "symlink"


# -- property: any documents round-trip --------------------------------------------------------

_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
    max_size=40,
)
_CODES = st.builds(Code, code=_TEXT.filter(bool), display=_TEXT, scheme=_TEXT)
_AUTHORS = st.none() | st.builds(
    XdmAuthor,
    idnps=_TEXT,
    family_name=_TEXT,
    given_name=_TEXT,
    institution_idnst=st.none() | _TEXT.filter(bool),
    institution_name=st.none() | _TEXT.filter(bool),
    specialty=st.none() | _CODES,
)
_MOMENTS = st.datetimes(
    min_value=datetime(1980, 1, 1), max_value=datetime(2100, 12, 31), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=0))
_MIME = st.sampled_from(["text/xml", "application/pdf", "text/plain", "image/jpeg"])


@st.composite
def _documents(draw: st.DrawFn) -> list[XdmDocument]:
    count = draw(st.integers(min_value=1, max_value=5))
    return [
        XdmDocument(
            content=draw(st.binary(max_size=2048)),
            mime_type=draw(_MIME),
            unique_id=f"1.2.250.1.999.{draw(st.integers(0, 10**9))}.{index}",
            title=draw(_TEXT),
            type_code=draw(_CODES),
            class_code=draw(_CODES),
            creation_time=draw(_MOMENTS),
            author=draw(_AUTHORS),
            healthcare_facility_type=draw(_CODES),
            practice_setting=draw(_CODES),
            format_code=draw(_CODES),
            confidentiality=tuple(draw(st.lists(_CODES, min_size=1, max_size=3))),
            language_code=draw(st.sampled_from(["fr-FR", "en-US", "art"])),
        )
        for index in range(count)
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents=_documents(), author=_AUTHORS)
def test_any_documents_round_trip(documents: list[XdmDocument], author: XdmAuthor | None) -> None:
    package = read_xdm(build(documents, author=author))
    assert package.documents == tuple(documents)
    assert package.submission_set.author == author


def test_inflated_bytes_are_counted_while_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulates a decompressor that yields more than the central directory announced (the
    # stdlib stops at the announced size today; the count must not rely on it).
    def lying_open(self: zipfile.ZipFile, info: zipfile.ZipInfo, *args: object) -> io.BytesIO:
        return io.BytesIO(b"<" * (info.file_size + 1))

    data = build()
    monkeypatch.setattr(zipfile.ZipFile, "open", lying_open)
    error = refused(data)
    assert error.code == "too_large"
    assert error.member == "IHE_XDM/SUBSET01/METADATA.XML"


def test_refuses_a_document_entry_without_uri() -> None:
    root = metadata_tree(build())
    entry = root.find(f"{rim('RegistryObjectList')}/{rim('ExtrinsicObject')}")
    assert entry is not None
    for slot in entry.findall(rim("Slot")):
        if slot.get("name") == "URI":
            entry.remove(slot)
    hostile = SafeET.tostring(root, encoding="UTF-8")
    error = refused(rewrite(build(), replace_with={"IHE_XDM/SUBSET01/METADATA.XML": hostile}))
    assert error.code == "metadata_invalid"
    assert "URI" in error.message
