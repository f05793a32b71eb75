"""The liste blanche of the MSSanté trust space: which domains exist, and which operator server
certificate (by subject DN) may send and receive for each.

Format: the XML ANS publishes at ``espacedeconfiance.mssante.fr/listeblanchemssante.xml``
(namespace ``https://listeblanche.mssante.fr/schema``; reference ``mssante.md`` §1.1): one
``<Domaine>`` per (domain, server certificate) pair, the same ``Nom`` repeated for operators
with several servers. No XSD is published; the element table of the reference is the schema.

A refresh never makes things worse: an unreadable or suspiciously shrunk download keeps the
previous list (IN-19) and says why; a valid one replaces it for the next SMTP command, without a
restart (IN-18).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

NS = "https://listeblanche.mssante.fr/schema"
_N = f"{{{NS}}}"
_ROOT = "ListeBlancheMSSante"
# A new list holding less than this share of the previous one's domains is refused: an ANS
# list does not lose half its operators overnight, a truncated download does.
MIN_KEPT_SHARE = 0.5

log = logging.getLogger("parcours.messagerie.listeblanche")

DN = frozenset[tuple[str, str]]


class ListeBlancheError(ValueError):
    """The document is not a usable liste blanche (the message says why, in French)."""


def _split_rdns(dn: str) -> list[str]:
    """Split on commas not escaped by a backslash (RFC 4514 §2.4)."""
    parts, current, escaped = [], [], False
    for char in dn:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char in ",;":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in (part.strip() for part in parts) if p]


def normalise_dn(dn: str) -> DN:
    """Order-, space- and case-insensitive form of a DN: the reference (§1.1) found entries with
    spaces after commas and ``L=`` instead of ``ST=``, and RFC 4514 strings from a certificate
    come in the reverse order of the list's."""
    attributes = []
    for rdn in _split_rdns(dn):
        if "=" not in rdn:
            raise ListeBlancheError(f"DN illisible : « {dn} ».")
        kind, value = rdn.split("=", 1)
        attributes.append((kind.strip().upper(), value.strip().replace("\\", "").casefold()))
    if not attributes:
        raise ListeBlancheError("DN vide.")
    return frozenset(attributes)


@dataclass(frozen=True)
class Entry:
    domain: str
    description: str
    dn: str
    updated: str | None = None


@dataclass(frozen=True)
class ListeBlanche:
    generated_at: datetime | None
    entries: tuple[Entry, ...]
    _by_domain: dict[str, frozenset[DN]] = field(default_factory=dict, repr=False)
    _by_dn: dict[DN, frozenset[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, entries: Iterable[Entry], generated_at: datetime | None = None) -> ListeBlanche:
        by_domain: dict[str, set[DN]] = {}
        by_dn: dict[DN, set[str]] = {}
        kept = tuple(entries)
        for entry in kept:
            dn = normalise_dn(entry.dn)
            domain = entry.domain.strip().lower()
            by_domain.setdefault(domain, set()).add(dn)
            by_dn.setdefault(dn, set()).add(domain)
        return cls(
            generated_at,
            kept,
            {d: frozenset(s) for d, s in by_domain.items()},
            {d: frozenset(s) for d, s in by_dn.items()},
        )

    @property
    def domains(self) -> frozenset[str]:
        return frozenset(self._by_domain)

    def is_listed(self, domain: str) -> bool:
        return domain.strip().lower() in self._by_domain

    def domains_of(self, dn: str | DN) -> frozenset[str]:
        key = normalise_dn(dn) if isinstance(dn, str) else dn
        return self._by_dn.get(key, frozenset())

    def allows(self, domain: str, dn: str | DN) -> bool:
        """May the server whose certificate has this DN send or receive for ``domain``?"""
        key = normalise_dn(dn) if isinstance(dn, str) else dn
        return key in self._by_domain.get(domain.strip().lower(), frozenset())


def _text(element: Element, name: str, required: bool = True) -> str:
    child = element.find(_N + name)
    value = (child.text or "").strip() if child is not None else ""
    if required and not value:
        raise ListeBlancheError(f"Domaine sans élément <{name}>.")
    return value


def parse(data: bytes) -> ListeBlanche:
    """Parse an ANS liste blanche. Entities and DTDs are refused (defusedxml); a document whose
    closing root tag is missing (seen in the GitHub mirror, reference §1.1) is completed once."""
    try:
        root = _parse_xml(data)
    except (ParseError, DefusedXmlException) as exc:
        raise ListeBlancheError(f"Liste blanche illisible : {exc}.") from None
    if root.tag != _N + _ROOT:
        raise ListeBlancheError(
            f"Élément racine inattendu « {root.tag} » (attendu {_ROOT} dans l'espace {NS})."
        )
    generated = None
    stamp = root.findtext(_N + "DateDeGeneration")
    if stamp:
        try:
            generated = datetime.fromisoformat(stamp.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ListeBlancheError(f"DateDeGeneration illisible : « {stamp} ».") from None
    entries = []
    for domaine in root.iter(_N + "Domaine"):
        entries.append(
            Entry(
                domain=_text(domaine, "Nom"),
                description=_text(domaine, "Description", required=False),
                dn=_text(domaine, "DNCertificatOperateur"),
                updated=_text(domaine, "DateMAJ", required=False) or None,
            )
        )
    if not entries:
        raise ListeBlancheError("La liste blanche ne contient aucun domaine.")
    return ListeBlanche.of(entries, generated)


def _parse_xml(data: bytes) -> Element:
    try:
        return SafeET.fromstring(data, forbid_dtd=True)
    except ParseError:
        closing = f"</{_ROOT}>".encode()
        if closing not in data[-200:]:
            return SafeET.fromstring(data.rstrip() + b"\n" + closing, forbid_dtd=True)
        raise


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_xml(entries: Iterable[Entry], generated_at: datetime | None = None) -> bytes:
    """Write a list in the ANS format (the demo publishes its operators' list with it)."""
    stamp = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<ListeBlancheMSSante xmlns="{NS}">',
        f"  <DateDeGeneration>{stamp}</DateDeGeneration>",
        "  <ListeDomaines>",
    ]
    for entry in entries:
        lines += [
            "    <Domaine>",
            f"      <Nom>{_escape(entry.domain)}</Nom>",
            f"      <Description>{_escape(entry.description)}</Description>",
            f"      <DNCertificatOperateur>{_escape(entry.dn)}</DNCertificatOperateur>",
            "      <ResponsableContact>00 00 00 00 00, contact@example.invalid"
            "</ResponsableContact>",
            "      <SupportContact>00 00 00 00 00, support@example.invalid</SupportContact>",
            f"      <DateMAJ>{entry.updated or stamp}</DateMAJ>",
            "    </Domaine>",
        ]
    lines += ["  </ListeDomaines>", "</ListeBlancheMSSante>", ""]
    return "\n".join(lines).encode()


@dataclass
class RefreshOutcome:
    replaced: bool
    domains: int
    reason: str | None = None


class ListeBlancheSource:
    """The list in force, refreshed from ``fetch`` (a file read or an HTTPS download verified
    against the IGC-Santé bundle) and persisted to ``cache`` so that a restart while ANS is
    unreachable starts from the last good copy."""

    def __init__(self, fetch: Callable[[], bytes], cache: Path | None = None) -> None:
        self._fetch = fetch
        self._cache = cache
        self._lock = threading.Lock()
        self._current: ListeBlanche | None = None
        self.last_refresh: float | None = None
        self.last_error: str | None = None
        if cache is not None and cache.exists():
            try:
                self._current = parse(cache.read_bytes())
            except ListeBlancheError as exc:
                log.error("copie locale de la liste blanche inutilisable : %s", exc)

    @classmethod
    def from_file(cls, path: Path, cache: Path | None = None) -> ListeBlancheSource:
        return cls(path.read_bytes, cache)

    @property
    def current(self) -> ListeBlanche:
        with self._lock:
            if self._current is None:
                raise ListeBlancheError("Aucune liste blanche chargée : relais impossible.")
            return self._current

    def refresh(self) -> RefreshOutcome:
        try:
            data = self._fetch()
            fresh = parse(data)
        except (OSError, ListeBlancheError) as exc:
            return self._keep(f"téléchargement ou lecture impossible ({exc})")
        with self._lock:
            previous = self._current
        if previous is not None and len(fresh.domains) < MIN_KEPT_SHARE * len(previous.domains):
            return self._keep(
                f"la nouvelle liste n'a que {len(fresh.domains)} domaines contre "
                f"{len(previous.domains)} : liste tronquée présumée"
            )
        with self._lock:
            self._current = fresh
            self.last_refresh = time.time()
            self.last_error = None
        if self._cache is not None:
            self._cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._cache.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(self._cache)
        return RefreshOutcome(True, len(fresh.domains))

    def _keep(self, reason: str) -> RefreshOutcome:
        with self._lock:
            self.last_error = reason
            count = len(self._current.domains) if self._current else 0
        log.error("liste blanche conservée : %s", reason)
        return RefreshOutcome(False, count, reason)
