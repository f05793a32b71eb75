"""The mail store on SQLite and, when PARCOURS_TEST_POSTGRES_URL is set, on PostgreSQL (the
``backend`` fixture of tests/conftest.py): UID allocation under concurrent deliveries, sealing
and its binding to the row, blob compensation, flags, copy/move/expunge, folder life cycle."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update

from parcours.messagerie import mailstore as mailstore_module
from parcours.messagerie.mailstore import (
    FolderExists,
    FolderNotFound,
    MailMessage,
    MailStore,
    MailStoreError,
    MessageNotFound,
)
from parcours.storage.crypto import DecryptionError
from tests.conftest import PostgresScratch
from tests.messagerie.imap_fixtures import ALICE, BOB, make_store

MESSAGE = (
    b"From: Dr Alice Martin <alice.martin@hopital-test.mssante.fr>\r\n"
    b"To: bob.durand@cabinet-test.mssante.fr\r\n"
    b"Subject: Bilan sanguin de Mme Dupont\r\n"
    b"Message-ID: <bilan-1@hopital-test.mssante.fr>\r\n"
    b"\r\n"
    b"Cholesterol total 2,1 g/l.\r\n"
)


@pytest.fixture
def store(backend: str, tmp_path: Path, pg_scratch: PostgresScratch | None) -> Iterator[MailStore]:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'mail.sqlite3'}"
    else:
        assert pg_scratch is not None
        url = pg_scratch.new_url()
    mail = make_store(url, tmp_path)
    mail.ensure_mailbox(ALICE)
    mail.ensure_mailbox(BOB)
    yield mail
    mail.db.dispose()


def blob_of(store: MailStore, folder: str, uid: int) -> str:
    with store.db.session() as session:
        return session.execute(
            select(MailMessage.blob_key)
            .join(mailstore_module.MailFolder)
            .where(
                mailstore_module.MailFolder.mailbox == ALICE,
                mailstore_module.MailFolder.name == folder,
                MailMessage.uid == uid,
            )
        ).scalar_one()


def test_standard_folders_and_idempotent_provisioning(store: MailStore) -> None:
    store.ensure_mailbox(ALICE.upper())  # addresses compare lower-case; nothing duplicated
    folders = store.folders(ALICE)
    assert [(f.name, f.special_use) for f in folders] == [
        ("INBOX", None),
        ("Drafts", "\\Drafts"),
        ("Junk", "\\Junk"),
        ("Sent", "\\Sent"),
        ("Trash", "\\Trash"),
    ]
    validities = {store.status(ALICE, f.name).uidvalidity for f in folders}
    assert len(validities) == 5


def test_deliver_fetch_roundtrip(store: MailStore) -> None:
    when = datetime(2026, 11, 23, 9, 15, 30, 123456, tzinfo=UTC)
    uid = store.deliver(ALICE, MESSAGE, flags=["\\seen", "\\Recent", "$Urgent"], internal_date=when)
    assert uid == 1
    assert store.deliver(ALICE, MESSAGE.replace(b"\r\n", b"\n")) == 2
    assert store.fetch_raw(ALICE, "INBOX", 1) == MESSAGE
    assert store.fetch_raw(ALICE, "inbox", 2) == MESSAGE  # bare LF stored as CRLF
    first, second = store.messages(ALICE, "INBOX")
    assert first.flags == {"\\Seen", "$Urgent"}  # canonical case; \Recent never stored
    assert first.internal_date == when.replace(microsecond=0)
    assert first.size == second.size == len(MESSAGE)
    assert first.message_id == "<bilan-1@hopital-test.mssante.fr>"
    status = store.status(ALICE, "INBOX")
    assert (status.messages, status.unseen, status.uidnext) == (2, 1, 3)
    with pytest.raises(MessageNotFound):
        store.fetch_raw(BOB, "INBOX", 1)  # another mailbox's INBOX has no such message


@pytest.mark.parametrize("threads", [8])
def test_concurrent_deliveries_never_share_a_uid(store: MailStore, threads: int) -> None:
    per_thread = 10
    uids: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                uid = store.deliver(ALICE, MESSAGE + f"{n}-{i}\r\n".encode())
                with lock:
                    uids.append(uid)
        except BaseException as exc:  # reported below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors
    total = threads * per_thread
    assert sorted(uids) == list(range(1, total + 1))
    snap = store.snapshot(ALICE, "INBOX")
    assert [m.uid for m in snap.messages] == list(range(1, total + 1))
    assert snap.uidnext == total + 1
    assert len(store.blobs.keys()) == total
    bodies = {store.fetch_raw(ALICE, "INBOX", u).rsplit(b"\r\n", 2)[-2] for u in (1, total)}
    assert len(bodies) == 2


def test_concurrent_opposite_moves_do_not_deadlock(store: MailStore) -> None:
    store.create_folder(ALICE, "A")
    store.create_folder(ALICE, "B")
    for _ in range(6):
        store.deliver(ALICE, MESSAGE, folder="A")
        store.deliver(ALICE, MESSAGE, folder="B")
    errors: list[BaseException] = []

    def shuttle(source: str, target: str) -> None:
        try:
            for _ in range(5):
                uids = [m.uid for m in store.messages(ALICE, source)][:2]
                store.move(ALICE, source, uids, target)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=shuttle, args=p) for p in (("A", "B"), ("B", "A"))]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    assert not errors
    assert len(store.messages(ALICE, "A")) + len(store.messages(ALICE, "B")) == 12


def test_blob_written_then_transaction_fails_leaves_nothing(
    store: MailStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(FolderNotFound):
        store.deliver(ALICE, MESSAGE, folder="Inexistant")
    assert store.blobs.keys() == []

    def broken() -> datetime:
        raise RuntimeError("database went away")

    monkeypatch.setattr(mailstore_module, "utcnow", broken)  # fails inside the transaction
    with pytest.raises(RuntimeError):
        store.deliver(ALICE, MESSAGE, internal_date=datetime(2026, 1, 1, tzinfo=UTC))
    monkeypatch.undo()
    assert store.blobs.keys() == []
    assert store.status(ALICE, "INBOX").uidnext == 1  # the UID reservation rolled back too


def test_sealed_at_rest_and_bound_to_its_row(store: MailStore) -> None:
    store.deliver(ALICE, MESSAGE)
    store.deliver(ALICE, MESSAGE.replace(b"2,1", b"1,9"))
    first, second = blob_of(store, "INBOX", 1), blob_of(store, "INBOX", 2)
    sealed_first, sealed_second = store.blobs.get(first), store.blobs.get(second)
    for needle in (b"Dupont", b"Cholesterol", b"Subject", b"alice"):
        assert needle not in sealed_first
    # Swapping two blobs between rows fails authentication instead of serving the other one.
    store.blobs.put(first, sealed_second)
    store.blobs.put(second, sealed_first)
    with pytest.raises(DecryptionError):
        store.fetch_raw(ALICE, "INBOX", 1)
    store.blobs.put(first, sealed_first)
    assert store.fetch_raw(ALICE, "INBOX", 1) == MESSAGE
    tampered = bytearray(sealed_first)
    tampered[-5] ^= 0x40
    store.blobs.put(first, bytes(tampered))
    with pytest.raises(DecryptionError):
        store.fetch_raw(ALICE, "INBOX", 1)


def test_flags(store: MailStore) -> None:
    for _ in range(3):
        store.deliver(ALICE, MESSAGE)
    assert store.add_flags(ALICE, "INBOX", [1, 2, 9], ["\\Flagged", "$Suivi"]) == {
        1: {"\\Flagged", "$Suivi"},
        2: {"\\Flagged", "$Suivi"},
    }
    assert store.remove_flags(ALICE, "INBOX", [2], ["$Suivi"]) == {2: {"\\Flagged"}}
    assert store.set_flags(ALICE, "INBOX", [3], ["\\DELETED", "\\Seen"]) == {
        3: {"\\Deleted", "\\Seen"}
    }
    assert [m.flags for m in store.messages(ALICE, "INBOX")] == [
        {"\\Flagged", "$Suivi"},
        {"\\Flagged"},
        {"\\Deleted", "\\Seen"},
    ]
    with pytest.raises(ValueError):
        store.store_flags(ALICE, "INBOX", [1], [], "toggle")


def test_copy_move_expunge(store: MailStore) -> None:
    for _ in range(3):
        store.deliver(ALICE, MESSAGE, flags=["\\Flagged"])
    trash = store.status(ALICE, "Trash").uidvalidity
    validity, mapping = store.copy(ALICE, "INBOX", [3, 1, 7], "Trash")
    assert validity == trash and mapping == [(1, 1), (3, 2)]
    assert len(store.blobs.keys()) == 5  # each copy has its own sealed bytes
    assert blob_of(store, "Trash", 1) != blob_of(store, "INBOX", 1)
    assert store.messages(ALICE, "Trash")[0].flags == {"\\Flagged"}
    assert store.fetch_raw(ALICE, "Trash", 2) == MESSAGE

    key = blob_of(store, "INBOX", 2)
    validity, mapping = store.move(ALICE, "INBOX", [2], "Trash")
    assert mapping == [(2, 3)]
    assert blob_of(store, "Trash", 3) == key  # moved without re-encryption
    assert [m.uid for m in store.messages(ALICE, "INBOX")] == [1, 3]
    with pytest.raises(FolderNotFound):
        store.copy(ALICE, "INBOX", [1], "Nulle-part")
    with pytest.raises(FolderNotFound):
        store.move(ALICE, "INBOX", [1], "Nulle-part")

    store.add_flags(ALICE, "INBOX", [1, 3], ["\\Deleted"])
    assert store.expunge(ALICE, "INBOX", [3]) == [3]  # UID EXPUNGE: only the listed ones
    assert store.expunge(ALICE, "INBOX") == [1]
    assert store.messages(ALICE, "INBOX") == []
    assert len(store.blobs.keys()) == 3
    assert store.fetch_raw(ALICE, "Trash", 1) == MESSAGE  # the copy survived its original


def test_folder_life_cycle_and_uidvalidity(store: MailStore) -> None:
    store.create_folder(ALICE, "Projets/Cardio/2026")
    names = [f.name for f in store.folders(ALICE)]
    assert {"Projets", "Projets/Cardio", "Projets/Cardio/2026"} <= set(names)
    with pytest.raises(FolderExists):
        store.create_folder(ALICE, "Projets")
    store.deliver(ALICE, MESSAGE, folder="Projets/Cardio")
    before = store.status(ALICE, "Projets/Cardio").uidvalidity
    store.rename_folder(ALICE, "Projets", "Archives/Projets")
    names = [f.name for f in store.folders(ALICE)]
    assert "Projets" not in names and "Archives/Projets/Cardio/2026" in names
    moved = store.status(ALICE, "Archives/Projets/Cardio")
    assert moved.messages == 1 and moved.uidvalidity != before
    assert store.fetch_raw(ALICE, "Archives/Projets/Cardio", 1) == MESSAGE
    with pytest.raises(MailStoreError):
        store.rename_folder(ALICE, "Archives", "Archives/Sous")

    # A name deleted and created again gets a new UIDVALIDITY (RFC 3501 §2.3.1.1).
    store.create_folder(ALICE, "Temp")
    store.deliver(ALICE, MESSAGE, folder="Temp")
    old = store.status(ALICE, "Temp").uidvalidity
    store.delete_folder(ALICE, "Temp")
    store.create_folder(ALICE, "Temp")
    again = store.status(ALICE, "Temp")
    assert again.uidvalidity > old and again.uidnext == 1
    with pytest.raises(MailStoreError):
        store.delete_folder(ALICE, "INBOX")
    with pytest.raises(FolderNotFound):
        store.delete_folder(ALICE, "Absent")

    # Renaming INBOX moves its messages and leaves it empty (RFC 3501 §6.3.5).
    store.deliver(ALICE, MESSAGE)
    store.rename_folder(ALICE, "INBOX", "INBOX/Ancien")
    assert store.status(ALICE, "INBOX").messages == 0
    assert store.fetch_raw(ALICE, "INBOX/Ancien", 1) == MESSAGE

    store.set_subscribed(ALICE, "Junk", False)
    assert not next(f for f in store.folders(ALICE) if f.name == "Junk").subscribed
    with pytest.raises(MailStoreError):
        store.create_folder(ALICE, "bad*name")
    # Folders of one mailbox are invisible to another.
    assert "Temp" not in [f.name for f in store.folders(BOB)]
    with pytest.raises(FolderNotFound):
        store.snapshot(BOB, "Temp")


def test_notifier_fires_after_commit(store: MailStore) -> None:
    seen: list[int] = []

    def callback() -> None:
        seen.append(len(store.messages(ALICE, "INBOX")))  # the row is already visible

    unsubscribe = store.subscribe(ALICE, "inbox", callback)
    store.deliver(ALICE, MESSAGE)
    store.deliver(BOB, MESSAGE)  # another mailbox: not notified
    store.add_flags(ALICE, "INBOX", [1], ["\\Seen"])
    assert seen == [1, 1]
    unsubscribe()
    store.deliver(ALICE, MESSAGE)
    assert seen == [1, 1]


def test_sweep_removes_only_old_orphan_mail_blobs(store: MailStore) -> None:
    store.deliver(ALICE, MESSAGE)
    store.blobs.put("mss/0000/orphan", b"x")
    store.blobs.put("dmp/doc", b"y")  # not the mail store's: left alone
    assert store.sweep_orphan_blobs(min_age_seconds=3600) == 0  # too recent
    root = store.blobs.root  # type: ignore[attr-defined]
    old = time.time() - 7200
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (old, old))
    assert store.sweep_orphan_blobs(min_age_seconds=3600) == 1
    assert sorted(store.blobs.keys()) == sorted([blob_of(store, "INBOX", 1), "dmp/doc"])


def test_uid_reservation_is_the_first_statement(store: MailStore) -> None:
    """The UPDATE ... RETURNING that allocates UIDs works on this backend and never hands out
    a number below the folder's uidnext, even if rows were inserted behind its back."""
    with store.db.session() as session:
        session.execute(
            update(mailstore_module.MailFolder)
            .where(mailstore_module.MailFolder.mailbox == ALICE)
            .values(uidnext=41)
        )
    assert store.deliver(ALICE, MESSAGE) == 41
    assert store.snapshot(ALICE, "INBOX").uidnext == 42
