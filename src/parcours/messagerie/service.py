"""Mailboxes of the operator, who may use them, and the traces of message events.

Every rule about *who* (which token opens which mailbox, which certificate is which software,
who may write to a patient) lives here, so that SMTP submission, IMAP and the relay ask the same
questions the same way.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from parcours.annuaire import directory
from parcours.audit.models import AuditEvent
from parcours.audit.service import AuditEntry, record
from parcours.auth.principal import Principal
from parcours.auth.tokens import AuthenticationError, TokenVerifier
from parcours.identity import INS, IdentifierError
from parcours.messagerie.models import MAILBOX_KINDS, HostedMailbox, PatientThread
from parcours.storage.db import Database
from parcours.storage.models import utcnow

# RFC 5321 §4.5.3.1: local part ≤ 64 octets, domain ≤ 255; we host plain dot-atoms only.
_LOCAL = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_DOMAIN = re.compile(r"^(?=.{1,255}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class MailboxError(ValueError):
    """A mailbox request that cannot be honoured (French message for the admin)."""


class AccessDenied(Exception):
    """Authentication or authorisation refused; the message is shown to the client."""


def split_address(address: str) -> tuple[str, str]:
    """Lower-cased (local, domain) of a syntactically valid address, else MailboxError."""
    text = address.strip().strip("<>").lower()
    local, sep, domain = text.rpartition("@")
    if not sep or not local or len(local) > 64 or not _LOCAL.match(local):
        raise MailboxError(f"Adresse invalide : « {address} ».")
    if not _DOMAIN.match(domain):
        raise MailboxError(f"Domaine invalide dans « {address} ».")
    return local, domain


def normalise(address: str) -> str:
    local, domain = split_address(address)
    return f"{local}@{domain}"


@dataclass(frozen=True)
class MailboxInfo:
    address: str
    kind: str
    owner: str
    display_name: str
    members: tuple[str, ...]
    active: bool

    @classmethod
    def of(cls, row: HostedMailbox) -> MailboxInfo:
        return cls(
            row.address, row.kind, row.owner, row.display_name, tuple(row.members), row.active
        )


def create_mailbox(
    db: Database,
    *,
    address: str,
    kind: str,
    owner: str,
    hosted_domains: Iterable[str],
    display_name: str | None = None,
    description: str | None = None,
    members: Iterable[str] = (),
    cert_der: bytes | None = None,
    liste_rouge: bool = False,
) -> MailboxInfo:
    """Create a mailbox of one of our domains for an identity the directory knows, publish it
    to the Annuaire (patients' excepted), and trace the creation; all in one transaction."""
    kind = kind.upper()
    if kind not in MAILBOX_KINDS:
        raise MailboxError(
            f"Type de BAL inconnu « {kind} » (attendu : {', '.join(MAILBOX_KINDS)})."
        )
    address = normalise(address)
    local, domain = split_address(address)
    if domain not in {d.lower() for d in hosted_domains}:
        raise MailboxError(f"Le domaine {domain} n'est pas hébergé par cet opérateur.")
    with db.session() as session:
        if session.get(HostedMailbox, address) is not None:
            raise MailboxError(f"La BAL {address} existe déjà (adresse et type immuables).")
        practitioner_id = organization_id = structure = None
        if kind in ("PER", "CAB"):
            professional = directory.find_professional(session, owner)
            if professional is None:
                raise MailboxError(f"Professionnel {owner} inconnu de l'annuaire (ou inactif).")
            practitioner_id, structure = owner, professional.structure
            display_name = display_name or professional.display_name
        elif kind in ("ORG", "APP"):
            org = directory.find_structure(session, owner)
            if org is None:
                raise MailboxError(f"Structure {owner} inconnue de l'annuaire (ou inactive).")
            organization_id, structure = org.id, owner
            display_name = display_name or org.name
            if kind == "APP" and cert_der is None:
                raise MailboxError("Une BAL applicative s'authentifie par certificat : --cert.")
        else:  # PAT: <matricule INS>@<patient domain>
            try:
                ins = INS.parse(local)
            except IdentifierError as exc:
                raise MailboxError(
                    f"BAL patient : la partie locale doit être l'INS ({exc})."
                ) from None
            if str(ins) != owner:
                raise MailboxError("BAL patient : la partie locale doit être l'INS du titulaire.")
            display_name = display_name or f"Patient {owner}"
        for member in members:
            if directory.find_professional(session, member) is None:
                raise MailboxError(f"Membre {member} inconnu de l'annuaire.")
        row = HostedMailbox(
            address=address,
            domain=domain,
            kind=kind,
            owner=owner,
            structure=structure,
            display_name=display_name or address,
            description=description,
            members=list(members),
            cert_sha256=hashlib.sha256(cert_der).hexdigest() if cert_der else None,
            liste_rouge=liste_rouge,
            active=True,
            created_at=utcnow(),
        )
        session.add(row)
        if kind != "PAT":
            directory.publish_mailbox(
                session,
                address=address,
                kind=kind,
                practitioner_id=practitioner_id,
                organization_id=organization_id,
                liste_rouge=liste_rouge,
                description=description,
            )
        info = MailboxInfo.of(row)
    trace(db, "mss-bal-creation", address, outcome=201, actor=("system", "admin"))
    return info


def get_mailbox(session: Session, address: str) -> HostedMailbox | None:
    try:
        key = normalise(address)
    except MailboxError:
        return None
    row = session.get(HostedMailbox, key)
    return row if row is not None and row.active else None


def mailboxes_of(session: Session, principal: Principal) -> list[str]:
    """The mailboxes a person may open: his own PER/CAB, the ORG ones he is a member of, and
    for a patient his patient mailbox."""
    if principal.kind == "professional" and principal.idnat_ps:
        rows = session.execute(
            select(HostedMailbox).where(
                HostedMailbox.active.is_(True),
                or_(
                    HostedMailbox.owner == principal.idnat_ps,
                    HostedMailbox.kind == "ORG",
                ),
            )
        ).scalars()
        return sorted(
            r.address
            for r in rows
            if (r.kind in ("PER", "CAB") and r.owner == principal.idnat_ps)
            or (r.kind == "ORG" and principal.idnat_ps in r.members)
        )
    if principal.kind == "patient" and principal.ins:
        rows = session.execute(
            select(HostedMailbox.address).where(
                HostedMailbox.active.is_(True),
                HostedMailbox.kind == "PAT",
                HostedMailbox.owner == principal.ins,
            )
        ).scalars()
        return sorted(rows)
    return []


class MailboxAuthenticator:
    """Which mailbox a client opens with an access token (SASL XOAUTH2 / OAUTHBEARER, or a
    token given as the LOGIN/PLAIN password) or with an organisation certificate (EXTERNAL).

    Tokens come from the issuers the API trusts (Pro Santé Connect, the patient IdP, the
    development IdP). A human professional must have authenticated strongly (CPS/e-CPS):
    password-only access to a health mailbox is not acceptable (reference §3.2, SUB-5).
    """

    def __init__(self, db: Database, verifier: TokenVerifier) -> None:
        self.db = db
        self.verifier = verifier

    def token(self, user: str | None, token: str) -> str:
        try:
            principal = self.verifier.verify(token)
        except AuthenticationError as exc:
            raise AccessDenied(str(exc)) from None
        if principal.kind == "professional" and not principal.strong_auth:
            raise AccessDenied(
                "Authentification forte requise (CPS ou e-CPS) pour une messagerie de santé."
            )
        with self.db.session() as session:
            allowed = mailboxes_of(session, principal)
        if not allowed:
            raise AccessDenied(f"Aucune BAL MSSanté de cet opérateur pour {principal.actor_id}.")
        if user:
            try:
                wanted = normalise(user)
            except MailboxError as exc:
                raise AccessDenied(str(exc)) from None
            if wanted not in allowed:
                raise AccessDenied(f"Le jeton ne donne pas accès à la BAL {wanted}.")
            return wanted
        return allowed[0]

    def certificate(self, user: str | None, cert_der: bytes) -> str:
        fingerprint = hashlib.sha256(cert_der).hexdigest()
        with self.db.session() as session:
            rows = list(
                session.execute(
                    select(HostedMailbox).where(
                        HostedMailbox.cert_sha256 == fingerprint,
                        HostedMailbox.kind == "APP",
                        HostedMailbox.active.is_(True),
                    )
                ).scalars()
            )
        if not rows:
            raise AccessDenied("Certificat inconnu : aucune BAL applicative ne lui est associée.")
        if user:
            wanted = user.strip().lower()
            for row in rows:
                if row.address == wanted:
                    return row.address
            raise AccessDenied(f"Ce certificat n'ouvre pas la BAL {wanted}.")
        return rows[0].address


# --- patient mailboxes (reference §2.4, PAT-1..PAT-4) ---------------------------------------


def open_or_close_thread(session: Session, professional: str, patient: str, ends: bool) -> None:
    """A professional wrote to a patient: the patient may answer, unless this message ends the
    exchange ([FIN] / X-MSS-MES: FIN)."""
    row = session.execute(
        select(PatientThread).where(
            PatientThread.patient == patient, PatientThread.professional == professional
        )
    ).scalar_one_or_none()
    now = utcnow()
    if row is None:
        session.add(
            PatientThread(
                patient=patient,
                professional=professional,
                opened_at=now,
                closed_at=now if ends else None,
            )
        )
    else:
        row.opened_at = row.opened_at if not ends and row.closed_at is None else now
        row.closed_at = now if ends else None


def patient_may_write(session: Session, patient: str, professional: str) -> bool:
    row = session.execute(
        select(PatientThread).where(
            PatientThread.patient == patient, PatientThread.professional == professional
        )
    ).scalar_one_or_none()
    return row is not None and row.closed_at is None


# --- traces ------------------------------------------------------------------------------


def trace_entry(
    event: str,
    mailbox: str | None,
    *,
    outcome: int,
    actor: tuple[str, str | None] = ("system", None),
    message_id: str | None = None,
    detail: str | None = None,
    client_ip: str | None = None,
) -> AuditEntry:
    """One message event for the platform's hash-chained trace (the mailbox's chain): who,
    what, which message (its Message-ID's digest), the SMTP/IMAP outcome and technical details
    (peer DN, TLS, size, counterpart). Never a body, never a subject (reference §4.6)."""
    resource = hashlib.sha256(message_id.encode()).hexdigest()[:40] if message_id else None
    return AuditEntry(
        request_id=uuid.uuid4().hex,
        actor_kind=actor[0],
        actor_id=actor[1],
        actor_structure=None,
        access_mode="normal",
        action=event,
        resource_type="MailMessage" if message_id else "Mailbox",
        resource_id=resource or (mailbox[:128] if mailbox else None),
        query=detail,
        outcome=outcome,
        client_ip=client_ip,
        mailbox=mailbox,
    )


def trace(
    db: Database,
    event: str,
    mailbox: str | None,
    *,
    outcome: int,
    actor: tuple[str, str | None] = ("system", None),
    message_id: str | None = None,
    detail: str | None = None,
    client_ip: str | None = None,
) -> None:
    """``trace_entry`` appended in a transaction of its own."""
    record(
        db,
        trace_entry(
            event,
            mailbox,
            outcome=outcome,
            actor=actor,
            message_id=message_id,
            detail=detail,
            client_ip=client_ip,
        ),
    )


def events_of(db: Database, mailbox: str, *, limit: int = 100) -> list[AuditEvent]:
    """The message events of a mailbox, newest first: what its owner may consult."""
    with db.session() as session:
        rows = list(
            session.execute(
                select(AuditEvent)
                .where(AuditEvent.mailbox == normalise(mailbox))
                .order_by(AuditEvent.seq.desc())
                .limit(limit)
            ).scalars()
        )
        session.expunge_all()
    return rows


def adopt_directory_mailboxes(db: Database, domains: Iterable[str]) -> int:
    """Host every directory mailbox of ``domains`` that is not hosted yet (the demo's operators
    take over the synthetic territory's mailboxes), in one transaction."""
    wanted = sorted({d.lower() for d in domains})
    now = utcnow()
    with db.session() as session:
        present = set(session.execute(select(HostedMailbox.address)).scalars())
        rows = [
            HostedMailbox(
                address=box.address,
                domain=box.address.rpartition("@")[2],
                kind=box.kind,
                owner=(box.practitioner_id or box.structure or box.address)[:64],
                structure=box.structure,
                display_name=box.name[:300],
                description=None,
                members=[],
                cert_sha256=None,
                liste_rouge=box.liste_rouge,
                active=True,
                created_at=now,
            )
            for box in directory.mailboxes_on_domains(session, wanted)
            if box.address not in present and box.kind in ("PER", "ORG", "CAB")
        ]
        session.add_all(rows)
    return len(rows)


def traces_for(
    session: Session, principal: Principal, mailbox: str, count: int, offset: int
) -> list[dict[str, Any]]:
    """The message events of a mailbox as FHIR AuditEvents, for a person who may open it (its
    holder, an ORG mailbox's members, the patient of a patient mailbox) and nobody else."""
    from parcours.audit.fhir import render

    try:
        address = normalise(mailbox)
    except MailboxError as exc:
        raise AccessDenied(str(exc)) from None
    if address not in mailboxes_of(session, principal):
        raise AccessDenied(f"Les traces de {address} ne sont consultables que par ses titulaires.")
    rows = session.execute(
        select(AuditEvent)
        .where(AuditEvent.mailbox == address)
        .order_by(AuditEvent.seq.desc())
        .offset(offset)
        .limit(count)
    ).scalars()
    return [render(row) for row in rows]
