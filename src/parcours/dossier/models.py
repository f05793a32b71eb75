"""DMP tables: patients, records, consents, submission sets, documents and their indexes.

Every row that belongs to a patient carries ``patient_id``: it is the sharding key a national
deployment would partition on (one patient's record always lives in one shard), and every
search starts from it (ITI-67/66 require the patient). Searchable metadata are columns or rows
of ``dmp_document_token`` (one generic multi-valued token index for every token/string search
parameter); the DocumentReference as published is kept as JSON and served from it, so a read
never re-renders or re-validates.

Document bytes are *not* here: they sit encrypted in the blob store, and the row keeps only
the blob key, the wrapped data key and its key id (``storage.crypto``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from parcours.storage.models import Base, JSONText, UTCDateTime


class Patient(Base):
    __tablename__ = "dmp_patient"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ins: Mapped[str] = mapped_column(String(15), nullable=False, unique=True)
    ins_system: Mapped[str] = mapped_column(String(64), nullable=False)
    family: Mapped[str] = mapped_column(String(200), nullable=False)
    given: Mapped[str] = mapped_column(String(200), nullable=False)
    family_folded: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    birth_date: Mapped[date] = mapped_column(Date, nullable=False)
    gender: Mapped[str] = mapped_column(String(16), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class Record(Base):
    """The DMP itself: exists only once the patient's consent is recorded."""

    __tablename__ = "dmp_record"

    patient_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dmp_patient.id"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # open | closed
    channel: Mapped[str] = mapped_column(String(32), nullable=False)
    consent_id: Mapped[str] = mapped_column(String(64), nullable=False)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    opened_by: Mapped[str] = mapped_column(String(64), nullable=False)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(64))
    close_reason: Mapped[str | None] = mapped_column(Text)
    retention_until: Mapped[date | None] = mapped_column(Date)
    # The holder's choices the access policy reads on every request (dmp-access.md §1.3), kept
    # on the record row so that one primary-key read gives the policy all it needs.
    closure_kind: Mapped[str | None] = mapped_column(String(16))  # holder | death | other
    mt: Mapped[str | None] = mapped_column(String(16))  # IDNPS of the médecin traitant
    oppose_bris_de_glace: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    oppose_centre_15: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    mask_all: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # {"blocked": [idnps], "removed_from_team": [idnps], "representatives": [ins],
    #  "authorisations": [{ps, kind, granted_at, expires_at, revoked_at, granted_by,
    #  collected_by}], "care_teams": [{id, structure, members, since, until, consented_at,
    #  consent_withdrawn_at, occupational}]}
    access: Mapped[dict[str, Any]] = mapped_column(JSONText, nullable=False, default=dict)
    settings_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)


class Reader(Base):
    """Who already read a record: the first consultation by a professional is notified to the
    holder (dmp-access.md §3.2), once, decided by the primary key rather than a scan of the
    traces."""

    __tablename__ = "dmp_reader"

    patient_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dmp_patient.id"), primary_key=True
    )
    actor_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class Consent(Base):
    __tablename__ = "dmp_consent"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dmp_patient.id"), nullable=False, index=True
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    channel: Mapped[str] = mapped_column(String(32), nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    recorded_by: Mapped[str] = mapped_column(String(64), nullable=False)
    resource: Mapped[dict[str, Any]] = mapped_column(JSONText, nullable=False)


class Submission(Base):
    """An ITI-65 SubmissionSet (FHIR List, code ``submissionset``)."""

    __tablename__ = "dmp_submission"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dmp_patient.id"), nullable=False
    )
    unique_id: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    source_id: Mapped[str] = mapped_column(String(255), nullable=False)
    designation: Mapped[str] = mapped_column(String(255), nullable=False)  # system|code
    date: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    source_family: Mapped[str | None] = mapped_column(String(200))
    source_given: Mapped[str | None] = mapped_column(String(200))
    submitted_by: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    resource: Mapped[dict[str, Any]] = mapped_column(JSONText, nullable=False)

    __table_args__ = (Index("ix_dmp_submission_patient_date", "patient_id", "date"),)


class Document(Base):
    """One DocumentReference (its current version) and where its bytes are."""

    __tablename__ = "dmp_document"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dmp_patient.id"), nullable=False
    )
    submission_id: Mapped[str | None] = mapped_column(String(64), ForeignKey("dmp_submission.id"))
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # current | superseded
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_by: Mapped[str | None] = mapped_column(String(64))
    master_identifier: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    class_code: Mapped[str] = mapped_column(String(16), nullable=False)
    type_code: Mapped[str] = mapped_column(String(64), nullable=False)
    space: Mapped[str] = mapped_column(String(32), nullable=False)
    date: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    creation: Mapped[datetime | None] = mapped_column(UTCDateTime)
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confidentiality: Mapped[str] = mapped_column(String(1), nullable=False)
    masque_ps: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    invisible_patient: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    invisible_representants: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # R22 delays count from it
    announced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # R33
    secret_session: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)  # R24b
    archived: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    author_idnps: Mapped[str | None] = mapped_column(String(16))
    authored_by_patient: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    published_by: Mapped[str] = mapped_column(String(64), nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    content_type: Mapped[str] = mapped_column(String(128), nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    sha1: Mapped[str] = mapped_column(String(28), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    binary_id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    blob_key: Mapped[str] = mapped_column(String(255), nullable=False)
    key_id: Mapped[str] = mapped_column(String(32), nullable=False)
    wrapped_key: Mapped[str] = mapped_column(String(128), nullable=False)
    resource: Mapped[dict[str, Any]] = mapped_column(JSONText, nullable=False)

    __table_args__ = (Index("ix_dmp_document_patient_status_date", "patient_id", "status", "date"),)


class DocumentToken(Base):
    """Multi-valued search index: one row per (document, parameter, system, code).

    String parameters (author.family, author.given) are stored folded in ``code`` and matched
    by prefix range, tokens by equality; so every ITI-67 parameter but dates and the full
    text is one ``EXISTS`` on this table."""

    __tablename__ = "dmp_document_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dmp_document.id", ondelete="CASCADE"), nullable=False
    )
    param: Mapped[str] = mapped_column(String(32), nullable=False)
    system: Mapped[str | None] = mapped_column(String(255))
    code: Mapped[str] = mapped_column(String(255), nullable=False)

    __table_args__ = (
        Index("ix_dmp_document_token_doc_param", "document_id", "param", "code"),
        Index("ix_dmp_document_token_param_code", "param", "code"),
    )


class DocumentTerm(Base):
    """Blind full-text index: keyed hashes of the document's analysed words, never the words."""

    __tablename__ = "dmp_document_term"

    document_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dmp_document.id", ondelete="CASCADE"), primary_key=True
    )
    term: Mapped[str] = mapped_column(String(32), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), nullable=False)

    __table_args__ = (Index("ix_dmp_document_term_patient_term", "patient_id", "term"),)


class DocumentVersion(Base):
    """Earlier versions of a DocumentReference (metadata updates), for ``_history``/vread."""

    __tablename__ = "dmp_document_version"

    document_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dmp_document.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    resource: Mapped[dict[str, Any]] = mapped_column(JSONText, nullable=False)


class HeirRequest(Base):
    """A request by an heir, concubin or PACS partner of a deceased holder (art. L1110-4 V and
    L1111-18 CSP; reference R43): filed online, reviewed offline by the Assurance Maladie, which
    then produces an extract limited to the stated purpose. Rendered as a FHIR ``Task``."""

    __tablename__ = "dmp_heir_request"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dmp_patient.id"), nullable=False, index=True
    )
    requester_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    requester_name: Mapped[str | None] = mapped_column(String(200))
    relationship: Mapped[str] = mapped_column(String(32), nullable=False)
    purpose: Mapped[str] = mapped_column(String(32), nullable=False)
    proof: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # requested|accepted|rejected
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decision_note: Mapped[str | None] = mapped_column(Text)


class AccessCode(Base):
    """The code handed to a patient when his record is opened at a desk (CPAM, pharmacy), to
    activate his online access — as the DMP / Mon espace santé letter does. Only a salted scrypt
    hash is kept; issuing a new code replaces the previous one."""

    __tablename__ = "dmp_access_code"

    patient_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dmp_patient.id"), primary_key=True
    )
    code_hash: Mapped[str] = mapped_column(String(200), nullable=False)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    issued_by: Mapped[str] = mapped_column(String(64), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
