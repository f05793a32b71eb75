"""Hosted MSSanté mailboxes: folders and messages in SQL, message bytes sealed in a blob store.

A mailbox (one MSSanté address) owns folders (``mss_folder``); a folder owns messages
(``mss_message``). The rows keep what IMAP needs to list a folder without touching the bytes
(UID, flags, size, internal date, Message-ID); the message itself is sealed with
``storage.crypto`` (a fresh data key per message, wrapped by the key ring) and put in the blob
store. The associated data binds a blob to its mailbox and key (``mss:<address>:<blob key>``),
so bytes swapped between two rows, or between two mailboxes, fail authentication instead of
being served to the wrong person. Moving a message between folders of the same mailbox is a
row update: the bytes do not move and are not re-encrypted.

Writes follow the platform's rule: the blob is written before the database commit, and
deleted again if the transaction fails (no orphan, nothing partial); blobs of expunged
messages are deleted only after the commit that removed their rows (a crash in between leaves
an orphan for :meth:`MailStore.sweep_orphan_blobs`, never a row without bytes).

UIDs (RFC 3501 §2.3.1.1) are allocated by ``UPDATE mss_folder SET uidnext = uidnext + n ...
RETURNING``: the statement both reserves the numbers and takes the folder's row lock
(PostgreSQL) or the database write lock (SQLite), so concurrent deliveries never share a UID
and a folder's UIDs only grow. The same statement with ``+ 0`` is the "lock this folder"
primitive used before any read-modify-write of flags or membership.

Give the mail store its own blob store (its own directory or bucket): the DMP orphan sweep
(``dossier.retention``) deletes any object no document row names.

The methods are synchronous (SQLAlchemy sync API); the IMAP server calls them through
``asyncio.to_thread``. Mailbox addresses are compared lower-case; folder names are Unicode
(the IMAP layer converts modified UTF-7), ``/`` is the hierarchy delimiter and ``INBOX`` is
case-insensitive (RFC 3501 §5.1).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from parcours.storage.blobs import BlobStore
from parcours.storage.crypto import KeyRing
from parcours.storage.db import Database
from parcours.storage.models import Base, UTCDateTime, utcnow

log = logging.getLogger(__name__)

DELIMITER = "/"
INBOX = "INBOX"
# RFC 3501 §2.3.2 system flags a client may set. \Recent is session state and never stored.
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
# The folders every mailbox gets, with their RFC 6154 §2 special-use attribute.
STANDARD_FOLDERS: dict[str, str | None] = {
    INBOX: None,
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
}
_CHUNK = 500


class MailFolder(Base):
    """One folder of one mailbox. ``uidnext`` is the next UID to hand out (RFC 3501 §2.3.1.1);
    ``uidvalidity`` changes whenever UIDs of this name stop meaning the same messages."""

    __tablename__ = "mss_folder"
    __table_args__ = (UniqueConstraint("mailbox", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mailbox: Mapped[str] = mapped_column(String(320), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    # 32-bit unsigned on the wire (RFC 3501 §9 nz-number): BigInteger, or 2038 would overflow.
    uidvalidity: Mapped[int] = mapped_column(BigInteger, nullable=False)
    uidnext: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    subscribed: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class MailMessage(Base):
    """One message in one folder. Only metadata: the bytes are sealed in the blob store under
    ``blob_key``, their data key wrapped in ``wrapped_key`` under key-ring key ``key_id``."""

    __tablename__ = "mss_message"
    __table_args__ = (UniqueConstraint("folder_id", "uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    folder_id: Mapped[int] = mapped_column(Integer, ForeignKey("mss_folder.id"), nullable=False)
    uid: Mapped[int] = mapped_column(Integer, nullable=False)
    # Space-separated system flags and keywords, canonical order (see ``flags_text``).
    flags: Mapped[str] = mapped_column(String(1000), nullable=False, default="")
    internal_date: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    blob_key: Mapped[str] = mapped_column(String(255), nullable=False)
    key_id: Mapped[str] = mapped_column(String(64), nullable=False)
    wrapped_key: Mapped[str] = mapped_column(String(255), nullable=False)
    # The Message-ID header (duplicate suppression, traces); never the subject or the body.
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


_F = MailFolder.__table__
_M = MailMessage.__table__


class MailStoreError(Exception):
    """A refusal the IMAP layer shows to the user; the message is French user-facing text."""


class FolderNotFound(MailStoreError):
    pass


class FolderExists(MailStoreError):
    pass


class InvalidFolderName(MailStoreError):
    pass


class MessageNotFound(MailStoreError):
    pass


@dataclass(frozen=True)
class FolderInfo:
    name: str
    subscribed: bool
    special_use: str | None


@dataclass(frozen=True)
class FolderStatus:
    name: str
    uidvalidity: int
    uidnext: int
    messages: int
    unseen: int


@dataclass(frozen=True)
class MessageInfo:
    uid: int
    flags: frozenset[str]
    size: int
    internal_date: datetime
    message_id: str | None


@dataclass(frozen=True)
class FolderSnapshot:
    """A folder and its messages in UID order: what an IMAP session numbers 1..n."""

    name: str
    uidvalidity: int
    uidnext: int
    messages: list[MessageInfo]


def normalise_address(address: str) -> str:
    address = address.strip().lower()
    if not address or len(address) > 320:
        raise MailStoreError("adresse de boîte aux lettres invalide")
    return address


def normalise_folder(name: str) -> str:
    """Validate a folder name and give INBOX its canonical case (RFC 3501 §5.1)."""
    name = name.rstrip(DELIMITER) if name != DELIMITER else name
    if name.upper() == INBOX:
        return INBOX
    if not name or len(name) > 255:
        raise InvalidFolderName("nom de dossier vide ou trop long")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name) or "*" in name or "%" in name:
        raise InvalidFolderName("nom de dossier invalide (caractères interdits)")
    if name.startswith(DELIMITER) or DELIMITER * 2 in name:
        raise InvalidFolderName("nom de dossier invalide (hiérarchie vide)")
    return name


def special_use(name: str) -> str | None:
    return STANDARD_FOLDERS.get(name)


def parse_flags(text: str) -> frozenset[str]:
    return frozenset(text.split())


def flags_text(flags: Iterable[str]) -> str:
    system = [f for f in SYSTEM_FLAGS if f in flags]
    keywords = sorted(f for f in flags if f not in SYSTEM_FLAGS and f.lower() != "\\recent")
    return " ".join(system + keywords)


def clean_flags(flags: Iterable[str]) -> frozenset[str]:
    """Canonical spelling of system flags (they are case-insensitive, RFC 3501 §2.3.2);
    \\Recent is dropped: it is not a client-settable flag."""
    canonical = {f.lower(): f for f in SYSTEM_FLAGS}
    out = set()
    for flag in flags:
        if flag.startswith("\\"):
            if flag.lower() in canonical:
                out.add(canonical[flag.lower()])
        elif flag:
            out.add(flag)
    return frozenset(out)


_LINE_END = re.compile(rb"\r\n|\r|\n")


def normalise_crlf(raw: bytes) -> bytes:
    """IMAP serves messages with CRLF line ends (RFC 3501 §2.3.4 sizes count them); a message
    submitted with bare LF is stored as it will be served, so RFC822.SIZE is the exact length."""
    return _LINE_END.sub(b"\r\n", raw)


def header_value(raw: bytes, name: str) -> str | None:
    """First value of a top-level header field, unfolded (ASCII-safe; for Message-ID)."""
    end = raw.find(b"\r\n\r\n")
    head = raw if end < 0 else raw[: end + 2]
    wanted = name.lower().encode()
    value: bytes | None = None
    for line in head.split(b"\r\n"):
        if value is not None:
            if line[:1] in (b" ", b"\t"):
                value += b" " + line.strip()
                continue
            break
        field, sep, rest = line.partition(b":")
        if sep and field.strip().lower() == wanted:
            value = rest.strip()
    if value is None:
        return None
    return value.decode("ascii", "replace")[:998] or None


class MailStore:
    """The SQL + sealed-blob mail store behind IMAP (and, later, SMTP delivery).

    Deliveries made through this object wake the IMAP sessions of the same process that
    watch the folder (:meth:`subscribe`); sessions also poll, for deliveries by another
    process.
    """

    def __init__(self, db: Database, blobs: BlobStore, keys: KeyRing) -> None:
        self.db = db
        self.blobs = blobs
        self.keys = keys
        self._watchers: dict[tuple[str, str], list[Callable[[], None]]] = {}
        self._watch_lock = threading.Lock()
        self._uidvalidity_lock = threading.Lock()
        self._last_uidvalidity = 0

    # -- change notification (IDLE) ---------------------------------------------------------

    def subscribe(
        self, address: str, folder: str, callback: Callable[[], None]
    ) -> Callable[[], None]:
        """Call ``callback()`` (in the writer's thread, after commit) whenever the folder
        changes through this store: delivery, flags, expunge, copy/move in or out, rename or
        delete. Returns the function that removes the subscription. The callback must be
        quick and thread-safe (the IMAP server uses ``loop.call_soon_threadsafe``)."""
        key = (normalise_address(address), normalise_folder(folder))
        with self._watch_lock:
            self._watchers.setdefault(key, []).append(callback)

        def unsubscribe() -> None:
            with self._watch_lock:
                callbacks = self._watchers.get(key, [])
                if callback in callbacks:
                    callbacks.remove(callback)
                if not callbacks:
                    self._watchers.pop(key, None)

        return unsubscribe

    def notify(self, address: str, folder: str) -> None:
        with self._watch_lock:
            callbacks = list(self._watchers.get((address, folder), ()))
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a dead session must not fail a delivery
                log.exception("mail store watcher failed")

    # -- folders -----------------------------------------------------------------------------

    def _new_uidvalidity(self, session: Session, address: str) -> int:
        """RFC 3501 §2.3.1.1 recommends the creation time; it must also never repeat for a
        name, so it is strictly increasing per mailbox and within this process (a folder
        deleted and re-created within one second still gets a new value)."""
        current = session.execute(
            select(func.max(_F.c.uidvalidity)).where(_F.c.mailbox == address)
        ).scalar()
        with self._uidvalidity_lock:
            value = max(int(time.time()), (current or 0) + 1, self._last_uidvalidity + 1)
            self._last_uidvalidity = value
        return min(value, 0xFFFFFFFF)

    def _add_folder(
        self, session: Session, address: str, name: str, *, subscribed: bool = True
    ) -> None:
        session.execute(
            _F.insert().values(
                mailbox=address,
                name=name,
                uidvalidity=self._new_uidvalidity(session, address),
                uidnext=1,
                subscribed=subscribed,
                created_at=utcnow(),
            )
        )

    def ensure_mailbox(self, address: str) -> None:
        """Create the standard folders a mailbox lacks (idempotent; safe when two logins
        race: the unique (mailbox, name) constraint makes the loser retry)."""
        address = normalise_address(address)
        for attempt in range(3):
            try:
                with self.db.session() as session:
                    existing = set(
                        session.execute(select(_F.c.name).where(_F.c.mailbox == address)).scalars()
                    )
                    for name in STANDARD_FOLDERS:
                        if name not in existing:
                            self._add_folder(session, address, name)
                return
            except IntegrityError:
                if attempt == 2:
                    raise

    def folders(self, address: str) -> list[FolderInfo]:
        address = normalise_address(address)
        with self.db.session() as session:
            rows = session.execute(
                select(_F.c.name, _F.c.subscribed).where(_F.c.mailbox == address)
            ).all()
        return sorted(
            (FolderInfo(name, bool(sub), special_use(name)) for name, sub in rows),
            key=lambda f: (f.name != INBOX, f.name),
        )

    def status(self, address: str, folder: str) -> FolderStatus:
        snap = self.snapshot(address, folder)
        unseen = sum(1 for m in snap.messages if "\\Seen" not in m.flags)
        return FolderStatus(snap.name, snap.uidvalidity, snap.uidnext, len(snap.messages), unseen)

    def create_folder(self, address: str, name: str) -> None:
        """RFC 3501 §6.3.3: superior hierarchical names are created as needed."""
        address, name = normalise_address(address), normalise_folder(name)
        try:
            with self.db.session() as session:
                existing = set(
                    session.execute(select(_F.c.name).where(_F.c.mailbox == address)).scalars()
                )
                if name in existing:
                    raise FolderExists("ce dossier existe déjà")
                parts = name.split(DELIMITER)
                for i in range(1, len(parts)):
                    parent = normalise_folder(DELIMITER.join(parts[:i]))
                    if parent not in existing:
                        self._add_folder(session, address, parent)
                self._add_folder(session, address, name)
        except IntegrityError:  # created concurrently by another session
            raise FolderExists("ce dossier existe déjà") from None

    def delete_folder(self, address: str, name: str) -> None:
        """RFC 3501 §6.3.4: INBOX cannot be deleted; inferior names are kept."""
        address, name = normalise_address(address), normalise_folder(name)
        if name == INBOX:
            raise MailStoreError("le dossier INBOX ne peut pas être supprimé")
        with self.db.session() as session:
            folder_id = self._lock(session, address, name)[0]
            keys = list(
                session.execute(select(_M.c.blob_key).where(_M.c.folder_id == folder_id)).scalars()
            )
            session.execute(delete(_M).where(_M.c.folder_id == folder_id))
            session.execute(delete(_F).where(_F.c.id == folder_id))
        self._discard_blobs(keys)
        self.notify(address, name)

    def rename_folder(self, address: str, old: str, new: str) -> None:
        """RFC 3501 §6.3.5: inferior names follow; renaming INBOX moves its messages into the
        new folder and leaves INBOX empty. Renamed folders get a new UIDVALIDITY: a client
        cache keyed on (name, UIDVALIDITY) must never mistake them for an older folder of the
        same name."""
        address, old, new = normalise_address(address), normalise_folder(old), normalise_folder(new)
        if new == INBOX:
            raise FolderExists("le dossier INBOX existe déjà")
        if new == old or (old != INBOX and new.startswith(old + DELIMITER)):
            raise InvalidFolderName("un dossier ne peut pas être renommé sous lui-même")
        try:
            moved = self._rename(address, old, new)
        except IntegrityError:  # a target name created concurrently by another session
            raise FolderExists("le dossier de destination existe déjà") from None
        for before, after in moved:
            self.notify(address, before)
            self.notify(address, after)

    def _rename(self, address: str, old: str, new: str) -> list[tuple[str, str]]:
        with self.db.session() as session:
            source_id = self._lock(session, address, old)[0]
            rows = session.execute(select(_F.c.id, _F.c.name).where(_F.c.mailbox == address)).all()
            names = {name for _, name in rows}
            if new in names:
                raise FolderExists("le dossier de destination existe déjà")
            if old == INBOX:
                self._add_folder(session, address, new)
                target_id = session.execute(
                    select(_F.c.id).where(_F.c.mailbox == address, _F.c.name == new)
                ).scalar_one()
                self._rehome_all(session, source_id, target_id)
                moved = [(old, new)]
            else:
                moved = [
                    (name, new + name[len(old) :])
                    for _, name in rows
                    if name == old or name.startswith(old + DELIMITER)
                ]
                clash = {target for _, target in moved} & (names - {n for n, _ in moved})
                if clash:
                    raise FolderExists("un sous-dossier de destination existe déjà")
                for folder_id, name in rows:
                    if name == old or name.startswith(old + DELIMITER):
                        session.execute(
                            update(_F)
                            .where(_F.c.id == folder_id)
                            .values(
                                name=new + name[len(old) :],
                                uidvalidity=self._new_uidvalidity(session, address),
                            )
                        )
            parts = new.split(DELIMITER)
            for i in range(1, len(parts)):
                parent = DELIMITER.join(parts[:i])
                if parent not in names and parent not in {t for _, t in moved}:
                    self._add_folder(session, address, parent)
                    names.add(parent)
        return moved

    def _rehome_all(self, session: Session, source_id: int, target_id: int) -> None:
        ids = list(
            session.execute(
                select(_M.c.id).where(_M.c.folder_id == source_id).order_by(_M.c.uid)
            ).scalars()
        )
        if not ids:
            return
        first = self._reserve(session, target_id, len(ids))
        session.execute(
            update(_M)
            .where(_M.c.id == bindparam("row_id"))
            .values(folder_id=target_id, uid=bindparam("new_uid")),
            [{"row_id": row_id, "new_uid": first + i} for i, row_id in enumerate(ids)],
        )

    def set_subscribed(self, address: str, name: str, subscribed: bool) -> None:
        """IMAP SUBSCRIBE/UNSUBSCRIBE (RFC 3501 §6.3.6-7): kept on the folder row."""
        address, name = normalise_address(address), normalise_folder(name)
        with self.db.session() as session:
            result = session.execute(
                update(_F)
                .where(_F.c.mailbox == address, _F.c.name == name)
                .values(subscribed=subscribed)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise FolderNotFound("ce dossier n'existe pas")

    # -- locking and UID allocation ------------------------------------------------------------

    def _lock(self, session: Session, address: str, name: str) -> tuple[int, int, int]:
        """Take the folder's write lock as the transaction's first statement (SQLite must not
        upgrade a read snapshot to a write, PostgreSQL locks the row); returns (id,
        uidvalidity, uidnext)."""
        row = session.execute(
            update(_F)
            .where(_F.c.mailbox == address, _F.c.name == name)
            .values(uidnext=_F.c.uidnext)
            .returning(_F.c.id, _F.c.uidvalidity, _F.c.uidnext)
        ).one_or_none()
        if row is None:
            raise FolderNotFound("ce dossier n'existe pas")
        return int(row[0]), int(row[1]), int(row[2])

    def _reserve(self, session: Session, folder_id: int, count: int) -> int:
        """Reserve ``count`` consecutive UIDs; returns the first."""
        first = session.execute(
            update(_F)
            .where(_F.c.id == folder_id)
            .values(uidnext=_F.c.uidnext + count)
            .returning(_F.c.uidnext - count)
        ).scalar_one()
        return int(first)

    # -- messages ----------------------------------------------------------------------------

    @staticmethod
    def _aad(address: str, blob_key: str) -> str:
        return f"mss:{address}:{blob_key}"

    @staticmethod
    def _blob_key(address: str) -> str:
        # Mailbox-derived prefix (an address is not a valid blob key, and should not appear in
        # object names anyway), so a deployment can shard by mailbox.
        prefix = hashlib.sha256(address.encode()).hexdigest()[:16]
        return f"mss/{prefix}/{uuid.uuid4().hex}"

    def _discard_blobs(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self.blobs.delete(key)
            except Exception:  # the orphan sweep finds it later; the caller's outcome stands
                log.exception("could not delete mail blob %s", key)

    def _seal(self, address: str, raw: bytes) -> tuple[str, str, str]:
        key = self._blob_key(address)
        sealed = self.keys.seal(raw, self._aad(address, key))
        self.blobs.put(key, sealed.ciphertext)
        return key, sealed.key_id, sealed.wrapped_key

    def deliver(
        self,
        address: str,
        raw: bytes,
        *,
        folder: str = INBOX,
        flags: Iterable[str] = (),
        internal_date: datetime | None = None,
    ) -> int:
        """Store a message in a folder of a mailbox; returns its UID."""
        return self.append(address, folder, raw, flags=flags, internal_date=internal_date)[1]

    def append(
        self,
        address: str,
        folder: str,
        raw: bytes,
        *,
        flags: Iterable[str] = (),
        internal_date: datetime | None = None,
    ) -> tuple[int, int]:
        """Like :meth:`deliver`, returning (UIDVALIDITY, UID) for RFC 4315 APPENDUID."""
        address, folder = normalise_address(address), normalise_folder(folder)
        raw = normalise_crlf(raw)
        when = (internal_date or utcnow()).replace(microsecond=0)
        flag_text = flags_text(clean_flags(flags))
        message_id = header_value(raw, "Message-ID")
        blob_key, key_id, wrapped = self._seal(address, raw)
        try:
            with self.db.session() as session:
                row = session.execute(
                    update(_F)
                    .where(_F.c.mailbox == address, _F.c.name == folder)
                    .values(uidnext=_F.c.uidnext + 1)
                    .returning(_F.c.id, _F.c.uidvalidity, _F.c.uidnext - 1)
                ).one_or_none()
                if row is None:
                    raise FolderNotFound("ce dossier n'existe pas")
                folder_id, uidvalidity, uid = (int(v) for v in row)
                session.execute(
                    _M.insert().values(
                        folder_id=folder_id,
                        uid=uid,
                        flags=flag_text,
                        internal_date=when,
                        size=len(raw),
                        blob_key=blob_key,
                        key_id=key_id,
                        wrapped_key=wrapped,
                        message_id=message_id,
                        created_at=utcnow(),
                    )
                )
        except BaseException:
            self._discard_blobs([blob_key])
            raise
        self.notify(address, folder)
        return uidvalidity, uid

    def snapshot(self, address: str, folder: str) -> FolderSnapshot:
        address, folder = normalise_address(address), normalise_folder(folder)
        with self.db.session() as session:
            row = session.execute(
                select(_F.c.id, _F.c.uidvalidity, _F.c.uidnext).where(
                    _F.c.mailbox == address, _F.c.name == folder
                )
            ).one_or_none()
            if row is None:
                raise FolderNotFound("ce dossier n'existe pas")
            rows = session.execute(
                select(_M.c.uid, _M.c.flags, _M.c.size, _M.c.internal_date, _M.c.message_id)
                .where(_M.c.folder_id == row[0])
                .order_by(_M.c.uid)
            ).all()
        messages = [MessageInfo(r[0], parse_flags(r[1]), r[2], r[3], r[4]) for r in rows]
        uidnext = max(int(row[2]), messages[-1].uid + 1 if messages else 1)
        return FolderSnapshot(folder, int(row[1]), uidnext, messages)

    def messages(self, address: str, folder: str) -> list[MessageInfo]:
        return self.snapshot(address, folder).messages

    def fetch_raw(self, address: str, folder: str, uid: int) -> bytes:
        """The message bytes, opened. A blob that does not authenticate raises
        ``storage.crypto.DecryptionError``: never garbage."""
        address, folder = normalise_address(address), normalise_folder(folder)
        with self.db.session() as session:
            row = session.execute(
                select(_M.c.blob_key, _M.c.key_id, _M.c.wrapped_key)
                .join(_F, _F.c.id == _M.c.folder_id)
                .where(_F.c.mailbox == address, _F.c.name == folder, _M.c.uid == uid)
            ).one_or_none()
        if row is None:
            raise MessageNotFound("ce message n'existe plus")
        blob_key, key_id, wrapped = row
        try:
            sealed = self.blobs.get(blob_key)
        except KeyError:
            raise MessageNotFound("le contenu de ce message est introuvable") from None
        return self.keys.open(sealed, key_id, wrapped, self._aad(address, blob_key))

    def store_flags(
        self, address: str, folder: str, uids: Sequence[int], flags: Iterable[str], mode: str
    ) -> dict[int, frozenset[str]]:
        """RFC 3501 §6.4.6 STORE: ``mode`` is "set", "add" or "remove". Returns the flags of
        every listed message that still exists (changed or not)."""
        if mode not in ("set", "add", "remove"):
            raise ValueError(f"unknown flag mode {mode!r}")
        address, folder = normalise_address(address), normalise_folder(folder)
        wanted = clean_flags(flags)
        result: dict[int, frozenset[str]] = {}
        changes: list[dict[str, object]] = []
        with self.db.session() as session:
            folder_id = self._lock(session, address, folder)[0]
            for start in range(0, len(uids), _CHUNK):
                chunk = list(uids[start : start + _CHUNK])
                for row_id, uid, text in session.execute(
                    select(_M.c.id, _M.c.uid, _M.c.flags).where(
                        _M.c.folder_id == folder_id, _M.c.uid.in_(chunk)
                    )
                ):
                    before = parse_flags(text)
                    if mode == "set":
                        after = wanted
                    elif mode == "add":
                        after = before | wanted
                    else:
                        after = before - wanted
                    result[uid] = after
                    if after != before:
                        changes.append({"row_id": row_id, "new_flags": flags_text(after)})
            if changes:
                session.execute(
                    update(_M)
                    .where(_M.c.id == bindparam("row_id"))
                    .values(flags=bindparam("new_flags")),
                    changes,
                )
        if changes:
            self.notify(address, folder)
        return result

    def set_flags(
        self, address: str, folder: str, uids: Sequence[int], flags: Iterable[str]
    ) -> dict[int, frozenset[str]]:
        return self.store_flags(address, folder, uids, flags, "set")

    def add_flags(
        self, address: str, folder: str, uids: Sequence[int], flags: Iterable[str]
    ) -> dict[int, frozenset[str]]:
        return self.store_flags(address, folder, uids, flags, "add")

    def remove_flags(
        self, address: str, folder: str, uids: Sequence[int], flags: Iterable[str]
    ) -> dict[int, frozenset[str]]:
        return self.store_flags(address, folder, uids, flags, "remove")

    def copy(
        self, address: str, source: str, uids: Sequence[int], target: str
    ) -> tuple[int, list[tuple[int, int]]]:
        """RFC 3501 §6.4.7 COPY: flags and internal date are kept; each copy gets its own
        sealed blob (an expunge of either never pulls the bytes from under the other).
        Returns (target UIDVALIDITY, [(source UID, new UID)]) for RFC 4315 COPYUID."""
        address = normalise_address(address)
        source, target = normalise_folder(source), normalise_folder(target)
        with self.db.session() as session:
            if (
                session.execute(
                    select(_F.c.id).where(_F.c.mailbox == address, _F.c.name == target)
                ).scalar()
                is None
            ):
                raise FolderNotFound("le dossier de destination n'existe pas")
            rows = self._rows(session, address, source, uids)
        written: list[str] = []
        copies: list[tuple[int, dict[str, object]]] = []
        try:
            for row in rows:
                raw = self.keys.open(
                    self.blobs.get(row.blob_key),
                    row.key_id,
                    row.wrapped_key,
                    self._aad(address, row.blob_key),
                )
                blob_key, key_id, wrapped = self._seal(address, raw)
                written.append(blob_key)
                copies.append(
                    (
                        row.uid,
                        {
                            "flags": row.flags,
                            "internal_date": row.internal_date,
                            "size": row.size,
                            "blob_key": blob_key,
                            "key_id": key_id,
                            "wrapped_key": wrapped,
                            "message_id": row.message_id,
                        },
                    )
                )
            with self.db.session() as session:
                folder_id, uidvalidity, _ = self._lock(session, address, target)
                mapping: list[tuple[int, int]] = []
                if copies:
                    first = self._reserve(session, folder_id, len(copies))
                    now = utcnow()
                    values = []
                    for i, (old_uid, fields) in enumerate(copies):
                        values.append(
                            {**fields, "folder_id": folder_id, "uid": first + i, "created_at": now}
                        )
                        mapping.append((old_uid, first + i))
                    session.execute(_M.insert(), values)
        except BaseException:
            self._discard_blobs(written)
            raise
        if mapping:
            self.notify(address, target)
        return uidvalidity, mapping

    def move(
        self, address: str, source: str, uids: Sequence[int], target: str
    ) -> tuple[int, list[tuple[int, int]]]:
        """RFC 6851 MOVE: the rows change folder and UID in one transaction (the blob, bound to
        the mailbox and not to the folder, stays where it is). Same return as :meth:`copy`."""
        address = normalise_address(address)
        source, target = normalise_folder(source), normalise_folder(target)
        with self.db.session() as session:
            # Lock both folders in name order: two opposite moves cannot deadlock.
            locks = {name: self._lock(session, address, name) for name in sorted({source, target})}
            source_id = locks[source][0]
            target_id, uidvalidity, _ = locks[target]
            ids: list[tuple[int, int]] = []
            for start in range(0, len(uids), _CHUNK):
                chunk = list(uids[start : start + _CHUNK])
                ids += session.execute(
                    select(_M.c.id, _M.c.uid).where(
                        _M.c.folder_id == source_id, _M.c.uid.in_(chunk)
                    )
                ).all()
            ids.sort(key=lambda r: r[1])
            mapping: list[tuple[int, int]] = []
            if ids:
                first = self._reserve(session, target_id, len(ids))
                mapping = [(uid, first + i) for i, (_, uid) in enumerate(ids)]
                session.execute(
                    update(_M)
                    .where(_M.c.id == bindparam("row_id"))
                    .values(folder_id=target_id, uid=bindparam("new_uid")),
                    [{"row_id": row_id, "new_uid": first + i} for i, (row_id, _) in enumerate(ids)],
                )
        if mapping:
            self.notify(address, source)
            self.notify(address, target)
        return uidvalidity, mapping

    def expunge(self, address: str, folder: str, uids: Sequence[int] | None = None) -> list[int]:
        """RFC 3501 §6.4.3 / RFC 4315 §2.1 UID EXPUNGE: remove the messages flagged \\Deleted
        (only those in ``uids`` when given). Rows go first; the bytes after the commit.
        Returns the removed UIDs in ascending order."""
        address, folder = normalise_address(address), normalise_folder(folder)
        wanted = None if uids is None else set(uids)
        with self.db.session() as session:
            folder_id = self._lock(session, address, folder)[0]
            rows = session.execute(
                select(_M.c.id, _M.c.uid, _M.c.flags, _M.c.blob_key).where(
                    _M.c.folder_id == folder_id
                )
            ).all()
            doomed = [
                r
                for r in rows
                if "\\Deleted" in parse_flags(r[2]) and (wanted is None or r[1] in wanted)
            ]
            ids = [r[0] for r in doomed]
            for start in range(0, len(ids), _CHUNK):
                session.execute(delete(_M).where(_M.c.id.in_(ids[start : start + _CHUNK])))
        self._discard_blobs(r[3] for r in doomed)
        if doomed:
            self.notify(address, folder)
        return sorted(r[1] for r in doomed)

    def _rows(self, session: Session, address: str, folder: str, uids: Sequence[int]) -> list[Any]:
        folder_id = session.execute(
            select(_F.c.id).where(_F.c.mailbox == address, _F.c.name == folder)
        ).scalar()
        if folder_id is None:
            raise FolderNotFound("ce dossier n'existe pas")
        rows = []
        for start in range(0, len(uids), _CHUNK):
            chunk = list(uids[start : start + _CHUNK])
            rows += session.execute(
                select(_M).where(_M.c.folder_id == folder_id, _M.c.uid.in_(chunk))
            ).all()
        return sorted(rows, key=lambda r: r.uid)

    # -- maintenance -------------------------------------------------------------------------

    def sweep_orphan_blobs(self, min_age_seconds: float = 3600.0) -> int:
        """Delete mail bytes no message row names (left by a crash between an expunge's
        commit and its blob deletion). Same rule as the DMP sweep: only objects older than
        ``min_age_seconds``, listed before the rows are read, so an in-flight delivery's
        bytes are never taken."""
        candidates = [
            k for k in self.blobs.keys_older_than(min_age_seconds) if k.startswith("mss/")
        ]
        removed = 0
        for start in range(0, len(candidates), _CHUNK):
            chunk = candidates[start : start + _CHUNK]
            with self.db.session() as session:
                known = set(
                    session.execute(select(_M.c.blob_key).where(_M.c.blob_key.in_(chunk))).scalars()
                )
            for key in chunk:
                if key not in known:
                    self.blobs.delete(key)
                    removed += 1
        return removed
