"""French full-text search over documents that are encrypted at rest: a *blind index*.

Document bytes are stored encrypted, so the database must not hold their words either: a grep
of the database for a phrase of a stored document has to find nothing. Each document is
therefore indexed as a set of **blind terms**: its text is extracted (:func:`extract_text`),
analysed into normalised French terms (:func:`analyse`), and every distinct term is replaced by
``HMAC-SHA256(index_key, term)`` truncated to 16 bytes, in hex (:func:`blind_terms`). A query
goes through the same analysis and hashing (:func:`query_terms`); a document matches when it
holds *every* query hash (AND). Without the index key the hashes cannot be computed, so they
reveal no word.

What a blind index still reveals, to someone who reads the database but has no key: how many
distinct terms a document has, and which documents share a term (the hash is deterministic).
Callers that want to prevent cross-record correlation pass a key derived per patient record
(e.g. HKDF of the index key and the record id); search within one record still works.

Analysis (the order matters, and every step is applied identically to documents and queries):

1. **casefold**, then **fold accents** character by character (NFKD, drop combining marks, ``œ``
   → ``oe``, ``æ`` → ``ae``), so composed and decomposed input, and text typed with or without
   accents (``DECOMPENSEE`` in capitals, a query typed on a phone) give the same characters;
2. **tokenise** on anything that is not a letter or digit (``l'insuffisance`` → ``l``,
   ``insuffisance``; ``anti-inflammatoire`` → ``anti``, ``inflammatoire``);
3. drop tokens shorter than 2 or longer than :data:`MAX_TOKEN_CHARS` characters (the latter are
   not words: base64, hashes) and French **stop words** (compared in folded form);
4. **stem** with the Snowball French stemmer, then drop one final ``e`` from the stem.

Accents are folded *before* stemming, although Snowball French is written for accented input:
a term must be a function of the unaccented token alone, otherwise ``décompensée`` (stemmed
accented: ``decompens``) and ``DECOMPENSEE`` (stemmed unaccented: ``decompense``) would never
meet, whichever order is used for the other step. Snowball on unaccented French still strips
plurals, ``-ment``, ``-ique``, ``-tion``, ``-aux``... what it no longer recognises is the
participle ending ``-ée``/``-é`` (now ``-ee``/``-e``), which the final-``e`` trim restores:
``décompensé``, ``décompensée``, ``décompensées``, ``decompense`` all give ``decompens``.

Changing any of this changes the terms: stored indexes record :data:`ANALYSER_VERSION` and must
be rebuilt when it changes.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import hmac
import html
import io
import json
import re
import threading
import unicodedata
from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import snowballstemmer
from defusedxml import ElementTree as SafeET

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

ANALYSER_VERSION = 1

MAX_TERMS_PER_DOCUMENT = 20_000  # distinct terms kept per document (bounds the index size)
MAX_TEXT_CHARS = 2_000_000  # extracted text is cut here (bounds the analysis work)
MAX_PDF_PAGES = 200
MAX_TOKEN_CHARS = 64
MIN_TOKEN_CHARS = 2
MIN_KEY_BYTES = 16
TERM_BYTES = 16  # truncated HMAC-SHA256: 128 bits, hex-encoded to 32 characters

CDA_NS = "urn:hl7-org:v3"
CDA_ROOT = f"{{{CDA_NS}}}ClinicalDocument"
_SECTION = f"{{{CDA_NS}}}section"
_TITLE = f"{{{CDA_NS}}}title"
_TEXT = f"{{{CDA_NS}}}text"
_NON_XML_BODY = f"{{{CDA_NS}}}nonXMLBody"

PLAIN_TYPES = frozenset({"text/plain"})
XML_TYPES = frozenset({"text/xml", "application/xml", "application/hl7-cda+xml"})
PDF_TYPES = frozenset({"application/pdf"})
FHIR_JSON_TYPES = frozenset({"application/fhir+json", "application/json+fhir"})

# Folded forms (no accents): "à" is "a", "été" is "ete"; one-letter words ("l'", "d'", "a")
# go anyway by length. Negations ("pas", "sans") are dropped too: keyword search cannot honour
# them.
_STOP_WORDS = """
    le la les de des du un une et ou au aux en pour par sur sous dans avec sans entre vers chez
    ce cet cette ces ceci cela ca qui que qu quoi dont est sont etait etaient ete etre ai as
    avons avez ont avait avaient eu il elle ils elles on nous vous je tu me te se lui leur
    leurs eux moi toi soi son sa ses mon ma mes ton ta tes notre nos votre vos ne ni pas plus
    mais donc or car si comme aussi tres etc
"""
STOP_WORDS = frozenset(_STOP_WORDS.split())

_WORD = re.compile(r"[^\W_]+")
# Combining marks of the Latin, Greek and Cyrillic diacritics blocks (what NFKD splits off "é").
_MARKS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_LIGATURES = (("œ", "oe"), ("æ", "ae"), ("ø", "o"), ("đ", "d"), ("ł", "l"), ("ı", "i"))
_TAG = re.compile(r"<[^>]*>")

# -- analysis -----------------------------------------------------------------------------------


def fold(text: str) -> str:
    """Casefolded, accent-free form of ``text``: "Œdème DÉCOMPENSÉ" → "oedeme decompense".

    Every step works character by character (casefold, NFKD, dropping combining marks), so
    word boundaries stay where they were and a fragment of a text folds to the fragment of the
    folded text. Composed and decomposed accents give the same result.
    """
    text = text.casefold()
    if text.isascii():
        return text
    text = _MARKS.sub("", unicodedata.normalize("NFKD", text).casefold())
    for ligature, letters in _LIGATURES:
        text = text.replace(ligature, letters)
    return text


_local = threading.local()


def _stemmer() -> Any:
    # The pure-Python Snowball stemmers keep state on the instance: one per thread.
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = snowballstemmer.stemmer("french")
    return stemmer


@lru_cache(maxsize=1 << 16)
def _term(token: str) -> str | None:
    """The term of one folded token, or None when it is not indexed (cached: stemming is slow)."""
    if not MIN_TOKEN_CHARS <= len(token) <= MAX_TOKEN_CHARS or token in STOP_WORDS:
        return None
    stem = _stemmer().stemWord(token)
    if len(stem) > MIN_TOKEN_CHARS and stem.endswith("e"):
        stem = stem[:-1]
    return stem


def _terms(text: str) -> Iterator[str]:
    return filter(None, map(_term, _WORD.findall(fold(text))))


def analyse(text: str) -> list[str]:
    """The normalised French terms of ``text``, in order, repeats included (see module doc)."""
    return list(_terms(text))


# -- blind terms --------------------------------------------------------------------------------


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, bytes | bytearray) or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the index key must be at least {MIN_KEY_BYTES} bytes")
    return bytes(key)


def _blind(key: bytes, term: str) -> str:
    return hmac.digest(key, term.encode("utf-8"), hashlib.sha256)[:TERM_BYTES].hex()


def blind_terms(text: str, key: bytes) -> set[str]:
    """The blind index of a document: the keyed hashes of its distinct terms.

    At most :data:`MAX_TERMS_PER_DOCUMENT` distinct terms are kept, the first ones in text
    order; tokens after the cap is reached are not even stemmed, which bounds the work a
    document made of millions of distinct "words" can cause.
    """
    key = _check_key(key)
    terms: dict[str, None] = {}
    for token in dict.fromkeys(_WORD.findall(fold(text))):  # distinct tokens, in text order
        term = _term(token)
        if term is not None and term not in terms:
            terms[term] = None
            if len(terms) >= MAX_TERMS_PER_DOCUMENT:
                break
    return {_blind(key, term) for term in terms}


def query_terms(query: str, key: bytes) -> list[str]:
    """The blind terms a document must all hold to match ``query`` (deduplicated, in order).

    An empty list means the query has no searchable word (only stop words, punctuation...):
    callers must treat it as "nothing to search", never as "match everything".
    """
    key = _check_key(key)
    return [_blind(key, term) for term in dict.fromkeys(_terms(query))]


# -- text extraction ----------------------------------------------------------------------------


def extract_text(content_type: str, data: bytes) -> str:
    """The searchable text of a document, or ``""`` when there is none or it cannot be read.

    Plain text, CDA R2 (title, section titles and narrative blocks; a level-1 ``nonXMLBody``
    is decoded and extracted in turn), other XML (all its text), PDF (pypdf, at most
    :data:`MAX_PDF_PAGES` pages) and FHIR JSON (narratives, titles, texts, displays, embedded
    attachments). An unknown type gives ``""`` unless the bytes are a CDA document. Never
    raises on bad content: hostile XML (entities, DTDs) and corrupt files give ``""``. The
    result is cut at :data:`MAX_TEXT_CHARS` characters.
    """
    try:
        return _extract(content_type, data, nested=False)[:MAX_TEXT_CHARS]
    except Exception:  # any failure of any parser on any input means "no text"
        return ""


def _media_type(content_type: str) -> tuple[str, str | None]:
    mime, _, params = (content_type or "").partition(";")
    charset = None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"') or None
    return mime.strip().lower(), charset


def _extract(content_type: str, data: bytes, *, nested: bool) -> str:
    mime, charset = _media_type(content_type)
    if mime in PLAIN_TYPES:
        return _plain_text(data, charset)
    if mime in XML_TYPES:
        return _xml_text(data, nested=nested, cda_only=False)
    if mime in PDF_TYPES:
        return _pdf_text(data)
    if mime in FHIR_JSON_TYPES:
        return _fhir_text(data, nested=nested)
    if data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<":
        return _xml_text(data, nested=nested, cda_only=True)
    return ""


def _plain_text(data: bytes, charset: str | None) -> str:
    data = data[: MAX_TEXT_CHARS * 4]  # enough bytes for MAX_TEXT_CHARS characters in UTF-8
    for encoding in (charset, "utf-8-sig", "cp1252"):
        if not encoding:
            continue
        try:
            decoder = codecs.getincrementaldecoder(encoding)()
            # final=False: a character cut by the byte limit above is left out, not an error.
            text = decoder.decode(data, final=False)
        except (LookupError, UnicodeError, TypeError):
            continue
        if isinstance(text, str):  # bytes-to-bytes codecs ("base64"...) are no charset
            return text
    return data.decode("latin-1")


def _xml_text(data: bytes, *, nested: bool, cda_only: bool) -> str:
    # forbid_dtd: a CDA never has a DTD, and refusing them refuses entity expansion (billion
    # laughs) and external entities before anything is expanded or fetched.
    root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    if root.tag != CDA_ROOT:
        return "" if cda_only else _joined(root)
    parts: list[str] = []
    for child in root:
        if child.tag == _TITLE:
            parts.append(_joined(child))
    for section in root.iter(_SECTION):
        for child in section:  # direct children only: nested sections come in their own turn
            if child.tag in (_TITLE, _TEXT):
                parts.append(_joined(child))
    if not nested:
        for body in root.iter(_NON_XML_BODY):
            for child in body:
                if child.tag == _TEXT:
                    parts.append(_embedded_cda_text(child))
    return "\n".join(p for p in parts if p)


def _joined(element: Element) -> str:
    # Adjacent nodes (table cells, list items) must not glue their words together.
    return " ".join(s.strip() for s in element.itertext() if s.strip())


def _embedded_cda_text(text_element: Element) -> str:
    media_type = text_element.get("mediaType", "text/plain")
    content = "".join(text_element.itertext())
    if text_element.get("representation", "TXT").upper() == "B64":
        try:
            raw = base64.b64decode("".join(content.split()), validate=True)
        except (binascii.Error, ValueError):
            return ""
    else:
        raw = content.encode("utf-8")
    return _extract(media_type, raw, nested=True)


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader  # imported on use: only PDF documents pay for it

    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        reader.decrypt("")  # many "protected" PDFs only restrict printing, with no password
    parts: list[str] = []
    size = 0
    for number, page in enumerate(reader.pages):
        if number >= MAX_PDF_PAGES or size >= MAX_TEXT_CHARS:
            break
        try:
            text = page.extract_text() or ""
        except Exception:  # one unreadable page does not lose the others
            continue
        parts.append(text)
        size += len(text)
    return "\n".join(parts)


_FHIR_TEXT_KEYS = frozenset({"title", "text", "display", "description", "valueString"})


def _fhir_text(data: bytes, *, nested: bool) -> str:
    document = json.loads(data)
    parts: list[str] = []
    size = 0
    stack: list[tuple[str, object]] = [("", document)]
    while stack and size < MAX_TEXT_CHARS:  # iterative, in document order
        key, node = stack.pop()
        text = ""
        if isinstance(node, str):
            if key == "div":
                text = html.unescape(_TAG.sub(" ", node))
            elif key in _FHIR_TEXT_KEYS:
                text = node
        elif isinstance(node, dict):
            attachment = node.get("data")
            if not nested and isinstance(attachment, str) and "contentType" in node:
                try:
                    raw = base64.b64decode(attachment, validate=True)
                except (binascii.Error, ValueError):
                    raw = b""
                text = _extract(str(node["contentType"]), raw, nested=True)
            stack.extend(reversed([(k, v) for k, v in node.items() if k != "data"]))
        elif isinstance(node, list):
            stack.extend(reversed([(key, v) for v in node]))
        if text.strip():
            parts.append(text.strip())
            size += len(text)
    return "\n".join(parts)
