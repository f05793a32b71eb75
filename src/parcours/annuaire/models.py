"""Directory tables: professionals, structures, activities (roles), mailboxes, and history.

Searchable attributes are columns (with folded copies for FHIR's accent/case-insensitive string
matching); everything else a FHIR resource shows lives in ``attrs`` (JSON). Resources are
rendered from these at read time — cheaper than storing and re-validating FHIR JSON, and the
rendering stays in one function per resource type.

Every entity row carries ``digest`` (of its source fields, to detect changes on re-import),
``version`` (FHIR ``meta.versionId``), ``active`` (set false when it vanishes from a newer
extract, never deleted) and the extract that last touched it. The previous state of a changed
row is kept in ``annuaire_history``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from parcours.storage.models import Base, JSONText, UTCDateTime


class Extract(Base):
    """One imported extract file: the unit of idempotence and of history."""

    __tablename__ = "annuaire_extract"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    file_name: Mapped[str] = mapped_column(String(255), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    generated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    stats: Mapped[dict[str, Any]] = mapped_column(JSONText, nullable=False)


class _Tracked:
    """Columns every directory entity shares (source tracking and FHIR versioning)."""

    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    digest: Mapped[str] = mapped_column(String(32), nullable=False)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    source: Mapped[str] = mapped_column(String(32), nullable=False)
    extract_id: Mapped[int | None] = mapped_column(Integer)
    attrs: Mapped[dict[str, Any]] = mapped_column(JSONText, nullable=False)


class Practitioner(_Tracked, Base):
    __tablename__ = "annuaire_practitioner"

    # The logical id is the IDNPS ("8"+RPPS / "0"+ADELI): stable across extracts.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    family: Mapped[str] = mapped_column(String(200), nullable=False)
    given: Mapped[str] = mapped_column(String(200), nullable=False)
    family_folded: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    given_folded: Mapped[str] = mapped_column(String(200), nullable=False, index=True)

    @property
    def idnat_ps(self) -> str:
        return self.id


class Organization(_Tracked, Base):
    __tablename__ = "annuaire_organization"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    structure_key: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    finess: Mapped[str | None] = mapped_column(String(9), index=True)
    finess_ej: Mapped[str | None] = mapped_column(String(9), index=True)
    siret: Mapped[str | None] = mapped_column(String(14), index=True)
    name: Mapped[str] = mapped_column(String(300), nullable=False)
    name_folded: Mapped[str] = mapped_column(String(300), nullable=False, index=True)
    city_folded: Mapped[str | None] = mapped_column(String(200), index=True)
    postal_code: Mapped[str | None] = mapped_column(String(10), index=True)
    sector_code: Mapped[str | None] = mapped_column(String(16), index=True)


class PractitionerRole(_Tracked, Base):
    """One activity of a professional (a line of the RPPS personal-activity extract)."""

    __tablename__ = "annuaire_practitioner_role"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    practitioner_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("annuaire_practitioner.id"), nullable=False, index=True
    )
    organization_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("annuaire_organization.id"), index=True
    )
    profession_code: Mapped[str] = mapped_column(String(8), nullable=False, index=True)
    specialty_code: Mapped[str | None] = mapped_column(String(16), index=True)
    mode_code: Mapped[str | None] = mapped_column(String(4))
    role_code: Mapped[str | None] = mapped_column(String(16))


class Mailbox(_Tracked, Base):
    """An MSSanté mailbox (BAL) and the resource that carries it in the directory."""

    __tablename__ = "annuaire_mailbox"

    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    type: Mapped[str] = mapped_column(String(3), nullable=False, index=True)
    carrier_type: Mapped[str] = mapped_column(String(32), nullable=False)
    carrier_id: Mapped[str] = mapped_column(String(64), nullable=False)
    practitioner_id: Mapped[str | None] = mapped_column(String(64), index=True)
    organization_id: Mapped[str | None] = mapped_column(String(64), index=True)
    liste_rouge: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    __table_args__ = (Index("ix_annuaire_mailbox_carrier", "carrier_type", "carrier_id"),)


class History(Base):
    """Previous states of directory rows, one row per change (created rows have none)."""

    __tablename__ = "annuaire_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(32), nullable=False)
    resource_id: Mapped[str] = mapped_column(String(320), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    change: Mapped[str] = mapped_column(String(16), nullable=False)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    extract_id: Mapped[int | None] = mapped_column(Integer)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONText, nullable=False)

    __table_args__ = (Index("ix_annuaire_history_resource", "resource_type", "resource_id"),)
