"""What every part of one operator instance shares: its domains, database, sealed storage,
liste blanche and authenticator. One instance per operator: the demo runs two in a process."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from parcours.dossier.store import DocumentStore
from parcours.messagerie.listeblanche import ListeBlancheSource
from parcours.messagerie.mailstore import MailStore
from parcours.messagerie.service import MailboxAuthenticator
from parcours.storage.blobs import BlobStore
from parcours.storage.crypto import KeyRing
from parcours.storage.db import Database

# No normative figure exists; 10 MB is the historic Mailiz limit and the LPS default
# (reference mssante.md §4.5). Advertised with ESMTP SIZE.
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024


@dataclass
class OperatorContext:
    name: str
    hostname: str
    domains: frozenset[str]
    db: Database
    mailstore: MailStore
    keys: KeyRing
    blobs: BlobStore
    liste: ListeBlancheSource
    authenticator: MailboxAuthenticator
    cert: Path
    key: Path
    ca_bundle: Path
    patient_domains: frozenset[str] = frozenset()
    # domain -> (host, port) of its inbound relay; domains absent are reached on port 25 of
    # the domain's own name (no MX lookup here: dnspython is not a dependency yet).
    routes: dict[str, tuple[str, int]] = field(default_factory=dict)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # Queue timers (RFC 5321 §4.5.4.1 gives 4–5 days; the reference §4.4 "warn after ~4 h").
    queue_lifetime: timedelta = timedelta(days=5)
    delay_warning: timedelta = timedelta(hours=4)
    first_retry_seconds: float = 30.0
    max_retry_seconds: float = 3600.0
    # The DMP's document store when this operator files XDM mail sent to dmp@<domain>
    # (messagerie.filing); None: those addresses are ordinary applicative mailboxes.
    document_store: DocumentStore | None = None

    def hosts(self, domain: str) -> bool:
        return domain.lower() in self.domains

    def is_patient_domain(self, domain: str) -> bool:
        return domain.lower() in self.patient_domains

    def route(self, domain: str) -> tuple[str, int]:
        return self.routes.get(domain.lower(), (domain.lower(), 25))
