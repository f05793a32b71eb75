"""IMAP4rev1 access to hosted MSSanté mailboxes (RFC 3501), our own asyncio server.

Why our own: the reference survey (mssante.md §8.3, stack.md §5) found no Python IMAP server
with a SQL store, implicit TLS, client-certificate (EXTERNAL) wiring and OAUTHBEARER together;
pymap advertises plaintext AUTH before STARTTLS and stores passwords. This module implements
the subset mail clients (Thunderbird, LPS mail modules, ``imaplib``) use, on top of
:class:`parcours.messagerie.mailstore.MailStore`:

- transport: implicit TLS (IMAPS) and plain + STARTTLS (RFC 3501 §6.2.1). Before TLS the
  server advertises ``STARTTLS LOGINDISABLED`` and no SASL mechanism, and refuses LOGIN and
  AUTHENTICATE with ``NO [PRIVACYREQUIRED]`` (RFC 5530): no credential ever crosses in clear.
- authentication: SASL XOAUTH2 and OAUTHBEARER (RFC 7628) with access tokens (Pro Santé
  Connect), initial response in the command (SASL-IR, RFC 4959) or after a continuation;
  EXTERNAL (RFC 4422 appendix A) with the TLS client certificate (CPS card, IGC-Santé
  organisation certificate of an APP mailbox); LOGIN whose *password is an access token* for
  clients without OAuth support: no password is ever stored or checked here. The decision is
  the :class:`Authenticator`'s; its French reason is shown as ``NO [AUTHENTICATIONFAILED]``.
  Three failures close the connection.
- mailbox access: folders (LIST/LSUB/STATUS/CREATE/DELETE/RENAME/SUBSCRIBE, RFC 6154
  SPECIAL-USE attributes), SELECT/EXAMINE, FETCH (including ENVELOPE, BODYSTRUCTURE and every
  BODY[section]<partial> form, computed from the exact bytes), STORE, COPY, MOVE (RFC 6851),
  EXPUNGE, UID variants with UIDPLUS (RFC 4315), SEARCH, APPEND with LITERAL+ (RFC 7888), IDLE
  (RFC 2177), NAMESPACE (RFC 2342), ID (RFC 2971), UNSELECT (RFC 3691).

Response texts are French and may contain UTF-8 (allowed by RFC 9051 §9 ``text``; IMAP4rev1
clients display it as received). Nothing here logs a message body, a subject, a search string
or a token: logs name the command, the mailbox address and the peer only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import contextlib
import email
import email.policy
import email.utils
import json
import logging
import re
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.message import Message
from functools import partial
from typing import Any, Protocol

from parcours.messagerie.mailstore import (
    DELIMITER,
    SYSTEM_FLAGS,
    FolderExists,
    FolderNotFound,
    InvalidFolderName,
    MailStore,
    MailStoreError,
    MessageInfo,
    MessageNotFound,
    flags_text,
    normalise_folder,
)
from parcours.storage.crypto import DecryptionError

log = logging.getLogger(__name__)

EventHook = Callable[[str, str | None, dict[str, object]], None]


# ---------------------------------------------------------------------------------------------
# Public contract


class AuthenticationFailed(Exception):
    """Raised by an :class:`Authenticator`; the message is the French reason the client sees
    after ``NO [AUTHENTICATIONFAILED]`` (e.g. "Jeton expiré"). Never put the token in it."""


class Authenticator(Protocol):
    """Decides who a connection is. Called through ``asyncio.to_thread`` (may block)."""

    def token(self, user: str | None, token: str) -> str:
        """Validate an OAuth access token (XOAUTH2, OAUTHBEARER, or LOGIN's password field)
        and return the mailbox address it grants; ``user`` is the identity the client claimed,
        if any. Raise :class:`AuthenticationFailed` with the reason otherwise."""
        ...

    def certificate(self, user: str | None, cert_der: bytes) -> str:
        """SASL EXTERNAL: map the TLS client certificate (DER; the TLS layer already checked
        its chain against the configured CA) to a mailbox address; ``user`` is the SASL
        authorisation identity if the client sent one."""
        ...


# ---------------------------------------------------------------------------------------------
# Mailbox name encoding: modified UTF-7 (RFC 3501 §5.1.3)


def encode_mailbox(name: str) -> str:
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def decode_mailbox(text: str) -> str:
    """Raises ValueError on anything that is not valid modified UTF-7."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if not 0x20 <= ord(ch) <= 0x7E:
            raise ValueError("8-bit or control character in a mailbox name")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i)
        if end < 0:
            raise ValueError("unterminated modified UTF-7 sequence")
        chunk = text[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            try:
                out.append(base64.b64decode(b64, validate=True).decode("utf-16-be"))
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise ValueError("invalid modified UTF-7 sequence") from exc
        i = end + 1
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Command syntax (RFC 3501 §9): atoms, quoted strings, literals, parenthesised lists


class _Lit(bytes):
    """The bytes of a literal ({n} or {n+}); a string token like a quoted one."""


class _Bad(Exception):
    """Tagged BAD: the command is malformed or not allowed in this state (RFC 3501 §7.1.3)."""


class _No(Exception):
    """Tagged NO with an optional RFC 5530 response code (RFC 3501 §7.1.2)."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.code = code


class _TooBig(Exception):
    def __init__(self, tag: str) -> None:
        super().__init__(tag)
        self.tag = tag


class _Disconnected(Exception):
    pass


class _LineTooLong(Exception):
    pass


Token = Any  # str (atom) | bytes (quoted string or literal) | list[Token]

_OPEN = object()
_CLOSE = object()
_ATOM_STOP = frozenset(b' ()"') | frozenset(range(0x20)) | {0x7F}


def _lex(text: bytes, out: list[object]) -> None:
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == 0x20:
            i += 1
        elif c == 0x28:
            out.append(_OPEN)
            i += 1
        elif c == 0x29:
            out.append(_CLOSE)
            i += 1
        elif c == 0x22:
            i += 1
            buf = bytearray()
            while True:
                if i >= n:
                    raise _Bad("Chaîne entre guillemets non terminée")
                c = text[i]
                if c == 0x5C:
                    if i + 1 >= n or text[i + 1] not in (0x22, 0x5C):
                        raise _Bad("Échappement invalide dans une chaîne entre guillemets")
                    buf.append(text[i + 1])
                    i += 2
                    continue
                if c == 0x22:
                    i += 1
                    break
                buf.append(c)
                i += 1
            out.append(bytes(buf))
        else:
            start = i
            while i < n:
                c = text[i]
                if c == 0x5B:  # fetch-att sections: "[" ... "]" may hold spaces and parens
                    close = text.find(b"]", i)
                    if close < 0:
                        raise _Bad("Crochet non fermé")
                    i = close + 1
                    continue
                if c in _ATOM_STOP:
                    break
                i += 1
            if i == start:
                raise _Bad("Caractère de contrôle dans la commande")
            out.append(text[start:i].decode("utf-8", "surrogateescape"))


def _tokens(parts: Iterable[bytes]) -> list[Token]:
    lexemes: list[object] = []
    for part in parts:
        if isinstance(part, _Lit):
            lexemes.append(part)
        else:
            _lex(part, lexemes)
    stack: list[list[Token]] = [[]]
    for item in lexemes:
        if item is _OPEN:
            new: list[Token] = []
            stack[-1].append(new)
            stack.append(new)
        elif item is _CLOSE:
            if len(stack) == 1:
                raise _Bad("Parenthèse fermante inattendue")
            stack.pop()
        else:
            stack[-1].append(item)
    if len(stack) != 1:
        raise _Bad("Parenthèse non fermée")
    return stack[0]


def _astr(tok: Token) -> str:
    if isinstance(tok, bytes):
        return tok.decode("utf-8", "surrogateescape")
    if isinstance(tok, str):
        return tok
    raise _Bad("Chaîne attendue, liste reçue")


def _atom(tok: Token, what: str = "atome") -> str:
    if not isinstance(tok, str):
        raise _Bad(f"{what} attendu")
    return tok


class _Cursor:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0

    def done(self) -> bool:
        return self.i >= len(self.tokens)

    def next(self, what: str = "argument") -> Token:
        if self.done():
            raise _Bad(f"Argument manquant : {what}")
        tok = self.tokens[self.i]
        self.i += 1
        return tok


_TAG_FORBIDDEN = set('(){%*"\\+')


def _valid_tag(tag: str) -> bool:
    return bool(tag) and all(0x21 <= ord(c) <= 0x7E and c not in _TAG_FORBIDDEN for c in tag)


# ---------------------------------------------------------------------------------------------
# Response syntax

_QUOTABLE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*\Z")


def _quote(value: bytes | str) -> bytes:
    """An IMAP string: quoted when 7-bit without CR/LF, else a literal (RFC 3501 §4.3)."""
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if len(data) <= 1024 and _QUOTABLE.match(data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


def _nstring(value: bytes | str | None) -> bytes:
    return b"NIL" if value is None else _quote(value)


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def _flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + flags_text(flags).encode() + b")"


def _format_set(values: list[int]) -> str:
    """Compact sequence set in the given order (RFC 4315 §3 pairs source and target sets)."""
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        out.append(str(values[i]) if i == j else f"{values[i]}:{values[j]}")
        i = j + 1
    return ",".join(out)


_SET_ITEM = re.compile(r"(\d+|\*)(?::(\d+|\*))?\Z")


def _parse_set(text: str) -> list[tuple[int | None, int | None]]:
    """RFC 3501 §9 sequence-set; None stands for ``*``."""
    ranges: list[tuple[int | None, int | None]] = []
    for item in text.split(","):
        m = _SET_ITEM.match(item)
        if not m:
            raise _Bad(f"Ensemble de messages invalide : {text[:40]}")
        values = [None if v == "*" else int(v) for v in (m.group(1), m.group(2) or m.group(1))]
        if any(v is not None and not 0 < v <= 0xFFFFFFFF for v in values):
            raise _Bad("Numéro de message invalide (0 ou hors limites)")
        ranges.append((values[0], values[1]))
    return ranges


def _in_ranges(value: int, ranges: list[tuple[int | None, int | None]], star: int) -> bool:
    for a, b in ranges:
        lo, hi = sorted((star if a is None else a, star if b is None else b))
        if lo <= value <= hi:
            return True
    return False


_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_MONTH_NUM = {m.lower(): i + 1 for i, m in enumerate(_MONTHS)}
_DATETIME = re.compile(
    r" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\Z"
)
_DATE = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})\Z")


def _format_internaldate(when: datetime) -> bytes:
    when = when.astimezone(UTC)
    return (
        f'"{when.day:2d}-{_MONTHS[when.month - 1]}-{when.year:04d} {when:%H:%M:%S} +0000"'.encode()
    )


def _parse_datetime(text: str) -> datetime:
    """APPEND date-time (RFC 3501 §9), e.g. ``" 5-Mar-2026 14:02:00 +0100"``."""
    m = _DATETIME.match(text)
    month = _MONTH_NUM.get(m.group(2).lower()) if m else None
    if not m or month is None:
        raise _Bad("Date invalide (attendu : jj-Mmm-aaaa hh:mm:ss +zzzz)")
    offset = timedelta(hours=int(m.group(8)), minutes=int(m.group(9)))
    tz = timezone(offset if m.group(7) == "+" else -offset)
    try:
        local = datetime(
            int(m.group(3)), month, int(m.group(1)),
            int(m.group(4)), int(m.group(5)), int(m.group(6)), tzinfo=tz,
        )  # fmt: skip
    except ValueError:
        raise _Bad("Date invalide") from None
    return local.astimezone(UTC)


def _parse_date(text: str) -> date:
    m = _DATE.match(text)
    month = _MONTH_NUM.get(m.group(2).lower()) if m else None
    if not m or month is None:
        raise _Bad("Date de recherche invalide (attendu : jj-Mmm-aaaa)")
    try:
        return date(int(m.group(3)), month, int(m.group(1)))
    except ValueError:
        raise _Bad("Date de recherche invalide") from None


# ---------------------------------------------------------------------------------------------
# MIME structure over the exact bytes (RFC 2045/2046), for BODYSTRUCTURE and BODY[section]


@dataclass
class _Entity:
    header: bytes  # the header block, blank line included
    body: bytes
    fields: list[tuple[str, bytes, bytes]]  # (lower-case name, unfolded value, raw lines)
    maintype: str
    subtype: str
    params: list[tuple[str, str]]
    children: list[_Entity] = field(default_factory=list)
    message: _Entity | None = None  # the encapsulated message of a message/rfc822 part

    def get(self, name: str) -> bytes | None:
        for fname, value, _ in self.fields:
            if fname == name:
                return value
        return None


_FIELD_START = re.compile(rb"[!-9;-~]+[ \t]*:")
_MAX_DEPTH = 20


def _split_header(data: bytes) -> tuple[bytes, bytes]:
    if data.startswith(b"\r\n"):
        return b"\r\n", data[2:]
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        return data[: end + 4], data[end + 4 :]
    if _FIELD_START.match(data):
        return data, b""
    return b"", data


def _parse_fields(header: bytes) -> list[tuple[str, bytes, bytes]]:
    fields: list[list[Any]] = []
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n", b"\r"):
            break
        if line[:1] in (b" ", b"\t"):
            if fields:
                fields[-1][1] += line
                fields[-1][2] += line
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        fields.append([name.strip().lower().decode("latin-1"), value, line])
    return [(n, re.sub(rb"\r?\n", b"", v).strip(), raw) for n, v, raw in fields]


def _split_params(value: str) -> tuple[str, list[tuple[str, str]]]:
    """``type/subtype; name=value; name="quoted"`` with the values kept as written (RFC 2231
    ``name*`` parameters pass through, as Dovecot does; clients decode them)."""
    items: list[str] = []
    buf: list[str] = []
    quoted = escaped = False
    for ch in value:
        if escaped:
            buf.append(ch)
            escaped = False
        elif quoted and ch == "\\":
            buf.append(ch)
            escaped = True
        elif ch == '"':
            quoted = not quoted
            buf.append(ch)
        elif ch == ";" and not quoted:
            items.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    items.append("".join(buf))
    params: list[tuple[str, str]] = []
    for item in items[1:]:
        name, sep, val = item.partition("=")
        name, val = name.strip().lower(), val.strip()
        if not sep or not name:
            continue
        if len(val) >= 2 and val[0] == '"' and val[-1] == '"':
            val = re.sub(r"\\(.)", r"\1", val[1:-1])
        params.append((name, val))
    return items[0].strip(), params


def _parse_entity(
    data: bytes, default: tuple[str, str] = ("text", "plain"), depth: int = 0
) -> _Entity:
    header, body = _split_header(data)
    fields = _parse_fields(header)
    entity = _Entity(header, body, fields, default[0], default[1], [])
    ctype = entity.get("content-type")
    if ctype is not None:
        head, params = _split_params(ctype.decode("latin-1"))
        main, slash, sub = head.lower().partition("/")
        if slash and main.strip() and sub.strip():
            entity.maintype, entity.subtype, entity.params = main.strip(), sub.strip(), params
        else:  # RFC 2045 §5.2: an invalid Content-Type means text/plain; charset=us-ascii
            entity.maintype, entity.subtype = "text", "plain"
            entity.params = [("charset", "us-ascii")]
    elif default == ("text", "plain"):
        entity.params = [("charset", "us-ascii")]
    if entity.maintype == "multipart":
        boundary = dict(entity.params).get("boundary")
        if not boundary or depth >= _MAX_DEPTH:
            entity.maintype, entity.subtype = "text", "plain"
            entity.params = [("charset", "us-ascii")]
            return entity
        child_default = ("message", "rfc822") if entity.subtype == "digest" else ("text", "plain")
        entity.children = [
            _parse_entity(part, child_default, depth + 1)
            for part in _split_multipart(body, boundary.encode("latin-1"))
        ] or [_parse_entity(b"\r\n", ("text", "plain"), depth + 1)]
    elif (entity.maintype, entity.subtype) == ("message", "rfc822") and depth < _MAX_DEPTH:
        entity.message = _parse_entity(body, ("text", "plain"), depth + 1)
    return entity


def _split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    """Body parts between delimiter lines; the CRLF before a delimiter belongs to the
    delimiter (RFC 2046 §5.1.1), so part bytes are exactly what BODY[n] serves."""
    delimiter = re.compile(rb"(?:\A|\r\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?=\r\n|\Z)")
    parts: list[bytes] = []
    start: int | None = None
    for m in delimiter.finditer(body):
        if start is not None:
            parts.append(body[start : m.start()])
        if m.group(1):
            start = None
            break
        start = m.end() + 2 if body.startswith(b"\r\n", m.end()) else m.end()
    if start is not None:
        parts.append(body[start:])
    return parts


def _params_list(params: list[tuple[str, str]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(_quote(k) + b" " + _quote(v) for k, v in params) + b")"


def _disposition(e: _Entity) -> bytes:
    value = e.get("content-disposition")
    if value is None:
        return b"NIL"
    head, params = _split_params(value.decode("latin-1"))
    if not head:
        return b"NIL"
    return b"(" + _quote(head.lower()) + b" " + _params_list(params) + b")"


def _language(e: _Entity) -> bytes:
    value = e.get("content-language")
    if value is None:
        return b"NIL"
    tags = [t.strip() for t in value.split(b",") if t.strip()]
    if not tags:
        return b"NIL"
    if len(tags) == 1:
        return _quote(tags[0])
    return b"(" + b" ".join(_quote(t) for t in tags) + b")"


def _bodystructure(e: _Entity, extensible: bool = True) -> bytes:
    """RFC 3501 §7.4.2 BODYSTRUCTURE (``extensible``) or BODY."""
    if e.children:
        out = b"(" + b"".join(_bodystructure(c, extensible) for c in e.children)
        out += b" " + _quote(e.subtype)
        if extensible:
            out += b" " + b" ".join(
                [_params_list(e.params), _disposition(e), _language(e),
                 _nstring(e.get("content-location"))]
            )  # fmt: skip
        return out + b")"
    encoding = e.get("content-transfer-encoding")
    items = [
        _quote(e.maintype),
        _quote(e.subtype),
        _params_list(e.params),
        _nstring(e.get("content-id")),
        _nstring(e.get("content-description")),
        _quote(encoding.lower() if encoding else b"7bit"),
        b"%d" % len(e.body),
    ]
    if e.message is not None:
        items += [
            _envelope(e.message),
            _bodystructure(e.message, extensible),
            b"%d" % e.body.count(b"\n"),
        ]
    elif e.maintype == "text":
        items.append(b"%d" % e.body.count(b"\n"))
    if extensible:
        items += [
            _nstring(e.get("content-md5")),
            _disposition(e),
            _language(e),
            _nstring(e.get("content-location")),
        ]
    return b"(" + b" ".join(items) + b")"


_GROUP = re.compile(r'\s*([^:<>"@,]+):\s*;?\s*\Z')


def _addresses(value: bytes | None) -> bytes | None:
    """An ENVELOPE address list (RFC 3501 §7.4.2): (name adl mailbox host) per address;
    names stay as written (RFC 2047 encoded words included), as the RFC requires."""
    if value is None:
        return None
    text = value.decode("utf-8", "surrogateescape")
    group = _GROUP.match(text)
    if group:  # an empty group, e.g. "undisclosed-recipients:;"
        name = group.group(1).strip()
        return b"((NIL NIL " + _quote(name) + b" NIL)(NIL NIL NIL NIL))"
    out: list[bytes] = []
    for name, addr in email.utils.getaddresses([text]):
        if not addr and not name:
            continue
        local, _, domain = addr.rpartition("@") if "@" in addr else (addr, "", "")
        out.append(
            b"("
            + b" ".join([_nstring(name or None), b"NIL", _nstring(local), _quote(domain)])
            + b")"
        )
    return b"(" + b"".join(out) + b")" if out else None


def _envelope(e: _Entity) -> bytes:
    sender_default = _addresses(e.get("from"))
    items = [
        _nstring(e.get("date")),
        _nstring(e.get("subject")),
        sender_default or b"NIL",
        _addresses(e.get("sender")) or sender_default or b"NIL",
        _addresses(e.get("reply-to")) or sender_default or b"NIL",
        _addresses(e.get("to")) or b"NIL",
        _addresses(e.get("cc")) or b"NIL",
        _addresses(e.get("bcc")) or b"NIL",
        _nstring(e.get("in-reply-to")),
        _nstring(e.get("message-id")),
    ]
    return b"(" + b" ".join(items) + b")"


@dataclass(frozen=True)
class _Section:
    part: tuple[int, ...]
    text: str  # "", HEADER, TEXT, MIME, HEADER.FIELDS, HEADER.FIELDS.NOT
    fields: tuple[str, ...] = ()

    def label(self) -> str:
        out = ".".join(str(p) for p in self.part)
        if self.text:
            out += ("." if out else "") + self.text
        if self.fields:
            out += " (" + " ".join(self.fields) + ")"
        return out

    @property
    def is_content(self) -> bool:
        """Whether serving it reveals message content (a "read" for traces, and \\Seen)."""
        return self.text not in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "MIME")


_SECTION_PART = re.compile(r"(\d+(?:\.\d+)*)(?:\.(.*))?\Z", re.S)
_SECTION_FIELDS = re.compile(r"(HEADER\.FIELDS(?:\.NOT)?)\s*\((.*)\)\Z", re.S | re.I)


def _parse_section(spec: str) -> _Section:
    """RFC 3501 §6.4.5 section-spec."""
    spec = spec.strip()
    part: tuple[int, ...] = ()
    m = _SECTION_PART.match(spec)
    if m:
        part = tuple(int(p) for p in m.group(1).split("."))
        if any(p == 0 for p in part):
            raise _Bad("Numéro de partie invalide")
        spec = m.group(2) or ""
    upper = spec.upper()
    if upper in ("", "HEADER", "TEXT", "MIME"):
        if upper == "MIME" and not part:
            raise _Bad("MIME demande un numéro de partie")
        return _Section(part, upper)
    fm = _SECTION_FIELDS.match(spec)
    if not fm:
        raise _Bad(f"Section inconnue : {spec[:40]}")
    names = _tokens([fm.group(2).encode("utf-8", "surrogateescape")])
    if not names or any(isinstance(n, list) for n in names):
        raise _Bad("Liste de champs d'en-tête invalide")
    return _Section(part, fm.group(1).upper(), tuple(_astr(n) for n in names))


def _find_part(root: _Entity, part: tuple[int, ...]) -> _Entity | None:
    """RFC 3501 §6.4.5 part numbering: multipart children by position; part 1 of a
    non-multipart message is its body; numbers below a message/rfc822 part address the
    encapsulated message."""
    entity, at_message = root, True
    for n in part:
        if entity.children:
            if n > len(entity.children):
                return None
            entity, at_message = entity.children[n - 1], False
        elif at_message:
            if n != 1:
                return None
            at_message = False
        elif entity.message is not None:
            inner = entity.message
            if inner.children:
                if n > len(inner.children):
                    return None
                entity = inner.children[n - 1]
            elif n == 1:
                entity = inner
            else:
                return None
        else:
            return None
    return entity


def _header_fields(e: _Entity, names: tuple[str, ...], negate: bool) -> bytes:
    wanted = {n.lower() for n in names}
    lines = [raw for name, _, raw in e.fields if (name in wanted) != negate]
    out = b"".join(raw if raw.endswith(b"\n") else raw + b"\r\n" for raw in lines)
    return out + b"\r\n"


def _section_bytes(raw: bytes, root: Callable[[], _Entity], sec: _Section) -> bytes | None:
    if not sec.part:
        if sec.text == "":
            return raw
        if sec.text in ("HEADER", "TEXT"):
            header, body = _split_header(raw)
            return header if sec.text == "HEADER" else body
        return _header_fields(root(), sec.fields, sec.text.endswith(".NOT"))
    entity = _find_part(root(), sec.part)
    if entity is None:
        return None
    if sec.text == "":
        return entity.body
    if sec.text == "MIME":
        return entity.header
    message = entity.message
    if message is None:
        return None
    if sec.text == "HEADER":
        return message.header
    if sec.text == "TEXT":
        return message.body
    return _header_fields(message, sec.fields, sec.text.endswith(".NOT"))


# ---------------------------------------------------------------------------------------------
# FETCH attributes (RFC 3501 §6.4.5)


@dataclass(frozen=True)
class _Item:
    kind: str
    section: _Section | None = None
    peek: bool = False
    partial: tuple[int, int] | None = None

    @property
    def needs_raw(self) -> bool:
        return self.kind not in ("FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE")

    @property
    def sets_seen(self) -> bool:
        if self.kind in ("RFC822", "RFC822.TEXT"):
            return True
        return self.kind == "SECTION" and not self.peek

    @property
    def reads_content(self) -> bool:
        if self.kind in ("RFC822", "RFC822.TEXT"):
            return True
        return self.kind == "SECTION" and self.section is not None and self.section.is_content


_SIMPLE_ITEMS = {
    "FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY",
    "RFC822", "RFC822.HEADER", "RFC822.TEXT",
}  # fmt: skip
_MACROS = {
    "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
    "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
    "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
}
_BODY_ITEM = re.compile(r"(BODY(?:\.PEEK)?)\[(.*)\](?:<(\d+)\.(\d+)>)?\Z", re.S | re.I)


def _parse_fetch_items(tok: Token) -> list[_Item]:
    if isinstance(tok, str) and tok.upper() in _MACROS:
        return [_Item(k) for k in _MACROS[tok.upper()]]
    atoms = tok if isinstance(tok, list) else [tok]
    if not atoms:
        raise _Bad("Liste d'attributs FETCH vide")
    items: list[_Item] = []
    for atom in atoms:
        text = _atom(atom, "attribut FETCH")
        upper = text.upper()
        if upper in _SIMPLE_ITEMS:
            items.append(_Item(upper))
            continue
        m = _BODY_ITEM.match(text)
        if not m:
            raise _Bad(f"Attribut FETCH inconnu : {text[:40]}")
        partial = None
        if m.group(3) is not None:
            partial = (int(m.group(3)), int(m.group(4)))
            if partial[1] == 0:
                raise _Bad("Longueur partielle nulle")
        section = _parse_section(m.group(2))
        items.append(_Item("SECTION", section, m.group(1).upper() == "BODY.PEEK", partial))
    return items


# ---------------------------------------------------------------------------------------------
# SEARCH (RFC 3501 §6.4.4)

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True), "UNANSWERED": ("\\Answered", False),
    "DELETED": ("\\Deleted", True), "UNDELETED": ("\\Deleted", False),
    "DRAFT": ("\\Draft", True), "UNDRAFT": ("\\Draft", False),
    "FLAGGED": ("\\Flagged", True), "UNFLAGGED": ("\\Flagged", False),
    "SEEN": ("\\Seen", True), "UNSEEN": ("\\Seen", False),
}  # fmt: skip
_ADDRESS_KEYS = {"FROM", "TO", "CC", "BCC", "SUBJECT"}
_DATE_KEYS = {
    "BEFORE": ("<", False), "ON": ("=", False), "SINCE": (">=", False),
    "SENTBEFORE": ("<", True), "SENTON": ("=", True), "SENTSINCE": (">=", True),
}  # fmt: skip


def _search_key(cur: _Cursor) -> tuple[Any, ...]:
    tok = cur.next("critère de recherche")
    if isinstance(tok, list):
        sub = _Cursor(tok)
        nodes = []
        while not sub.done():
            nodes.append(_search_key(sub))
        if not nodes:
            raise _Bad("Liste de critères vide")
        return ("AND", nodes)
    key = _atom(tok, "critère de recherche")
    upper = key.upper()
    if upper == "ALL":
        return ("ALL",)
    if upper in _FLAG_KEYS:
        return ("FLAG", *_FLAG_KEYS[upper])
    if upper in ("NEW", "RECENT"):  # \Recent is not kept (RFC 9051 §2.3.2 dropped it)
        return ("NONE",)
    if upper == "OLD":
        return ("ALL",)
    if upper in ("KEYWORD", "UNKEYWORD"):
        return ("FLAG", _atom(cur.next("mot-clé")), upper == "KEYWORD")
    if upper in _ADDRESS_KEYS:
        return ("HEADER", upper.lower(), _astr(cur.next("chaîne")))
    if upper == "HEADER":
        name = _astr(cur.next("nom de champ"))
        return ("HEADER", name.lower(), _astr(cur.next("chaîne")))
    if upper in ("BODY", "TEXT"):
        return (upper, _astr(cur.next("chaîne")))
    if upper in _DATE_KEYS:
        op, sent = _DATE_KEYS[upper]
        return ("DATE", op, sent, _parse_date(_astr(cur.next("date"))))
    if upper in ("LARGER", "SMALLER"):
        value = _astr(cur.next("taille"))
        if not value.isdigit():
            raise _Bad("Taille invalide")
        return ("SIZE", upper, int(value))
    if upper == "UID":
        return ("UID", _parse_set(_atom(cur.next("ensemble d'UID"))))
    if upper == "NOT":
        return ("NOT", _search_key(cur))
    if upper == "OR":
        return ("OR", _search_key(cur), _search_key(cur))
    if _SET_ITEM.match(key.split(",")[0]):
        return ("SEQ", _parse_set(key))
    raise _Bad(f"Critère de recherche inconnu : {key[:30]}")


def _needs_content(node: tuple[Any, ...]) -> bool:
    kind = node[0]
    if kind in ("HEADER", "BODY", "TEXT"):
        return True
    if kind == "DATE":
        return bool(node[2])
    if kind == "AND":
        return any(_needs_content(n) for n in node[1])
    if kind == "NOT":
        return _needs_content(node[1])
    if kind == "OR":
        return _needs_content(node[1]) or _needs_content(node[2])
    return False


def _decode_header(value: object) -> str:
    """Unfolded (RFC 5322 §2.2.3) and RFC 2047-decoded, so a search for "Jean Dupont" matches a
    display name folded or encoded between the two words."""
    text = re.sub(r"\r?\n(?=[ \t])", "", str(value))
    try:
        return str(make_header(decode_header(text)))
    except Exception:  # malformed encoded words: search the text as written
        return text


class _Candidate:
    """One message under evaluation; content is loaded and decoded only when a key needs it."""

    def __init__(self, seq: int, info: MessageInfo, load: Callable[[], bytes | None]) -> None:
        self.seq = seq
        self.info = info
        self._load = load
        self._msg: Message | None = None
        self._loaded = False
        self._body: str | None = None

    @property
    def message(self) -> Message | None:
        if not self._loaded:
            self._loaded = True
            raw = self._load()
            if raw is not None:
                self._msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        return self._msg

    def header(self, name: str) -> list[str]:
        msg = self.message
        if msg is None:
            return []
        return [_decode_header(v) for v in msg.get_all(name, [])]

    def all_headers(self) -> str:
        msg = self.message
        if msg is None:
            return ""
        return "\n".join(f"{k}: {_decode_header(v)}" for k, v in msg.items())

    def body(self) -> str:
        if self._body is None:
            texts: list[str] = []
            msg = self.message
            for part in msg.walk() if msg is not None else ():
                if part.get_content_maintype() != "text":
                    continue
                payload = part.get_payload(decode=True)
                if not isinstance(payload, bytes):
                    continue
                charset = part.get_content_charset() or "utf-8"
                try:
                    texts.append(payload.decode(charset, "replace"))
                except LookupError:
                    texts.append(payload.decode("utf-8", "replace"))
            self._body = "\n".join(texts)
        return self._body

    def sent_date(self) -> date | None:
        values = self.header("date")
        if not values:
            return None
        try:
            return email.utils.parsedate_to_datetime(values[0]).date()
        except (TypeError, ValueError, IndexError):
            return None


def _contains(haystack: str, needle: str) -> bool:
    return needle.casefold() in haystack.casefold()


def _match(node: tuple[Any, ...], c: _Candidate, top_seq: int, top_uid: int) -> bool:
    kind = node[0]
    if kind == "ALL":
        return True
    if kind == "NONE":
        return False
    if kind == "AND":
        return all(_match(n, c, top_seq, top_uid) for n in node[1])
    if kind == "NOT":
        return not _match(node[1], c, top_seq, top_uid)
    if kind == "OR":
        return _match(node[1], c, top_seq, top_uid) or _match(node[2], c, top_seq, top_uid)
    if kind == "FLAG":
        present = node[1].lower() in {f.lower() for f in c.info.flags}
        return present == node[2]
    if kind == "SEQ":
        return _in_ranges(c.seq, node[1], top_seq)
    if kind == "UID":
        return _in_ranges(c.info.uid, node[1], top_uid)
    if kind == "SIZE":
        return c.info.size > node[2] if node[1] == "LARGER" else c.info.size < node[2]
    if kind == "DATE":
        _, op, sent, when = node
        day = c.sent_date() if sent else c.info.internal_date.astimezone(UTC).date()
        if day is None:
            return False
        return day < when if op == "<" else day == when if op == "=" else day >= when
    if kind == "HEADER":
        values = c.header(node[1])
        if not node[2]:
            return bool(values)  # RFC 3501: an empty string matches any message with the field
        return any(_contains(v, node[2]) for v in values)
    if kind == "BODY":
        return _contains(c.body(), node[1])
    if kind == "TEXT":
        return _contains(c.all_headers(), node[1]) or _contains(c.body(), node[1])
    raise AssertionError(kind)


# ---------------------------------------------------------------------------------------------
# Sessions


@dataclass
class _View:
    """The selected folder as this session numbers it (RFC 3501 §2.3.1.2)."""

    name: str
    readonly: bool
    uidvalidity: int
    uids: list[int]
    info: dict[int, MessageInfo]
    unsubscribe: Callable[[], None]

    def seq_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None


_Handler = Callable[..., Any]
_ANY, _NONAUTH, _AUTH, _SELECTED = "any", "nonauth", "auth", "selected"
_NO_EXPUNGE = {"FETCH", "STORE", "SEARCH"}  # RFC 3501 §7.4.1: no EXPUNGE while answering these
_LITERAL_AT_END = re.compile(rb"\{(\d{1,12})(\+?)\}\Z")


class _Session:
    def __init__(
        self,
        server: ImapServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        tls: bool,
    ) -> None:
        self.server = server
        self.store = server.store
        self.reader = reader
        self.writer = writer
        self.tls = tls
        self.mailbox: str | None = None
        self.view: _View | None = None
        self.failures = 0
        self.closing = False
        self.aborted = False
        self.changed = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"
        self.commands: dict[str, tuple[_Handler, str]] = {
            "CAPABILITY": (self.cmd_capability, _ANY),
            "NOOP": (self.cmd_noop, _ANY),
            "LOGOUT": (self.cmd_logout, _ANY),
            "ID": (self.cmd_id, _ANY),
            "STARTTLS": (self.cmd_starttls, _NONAUTH),
            "LOGIN": (self.cmd_login, _NONAUTH),
            "AUTHENTICATE": (self.cmd_authenticate, _NONAUTH),
            "SELECT": (partial(self.cmd_select, readonly=False), _AUTH),
            "EXAMINE": (partial(self.cmd_select, readonly=True), _AUTH),
            "CREATE": (self.cmd_create, _AUTH),
            "DELETE": (self.cmd_delete, _AUTH),
            "RENAME": (self.cmd_rename, _AUTH),
            "SUBSCRIBE": (partial(self.cmd_subscribe, subscribed=True), _AUTH),
            "UNSUBSCRIBE": (partial(self.cmd_subscribe, subscribed=False), _AUTH),
            "LIST": (partial(self.cmd_list, lsub=False), _AUTH),
            "LSUB": (partial(self.cmd_list, lsub=True), _AUTH),
            "STATUS": (self.cmd_status, _AUTH),
            "APPEND": (self.cmd_append, _AUTH),
            "NAMESPACE": (self.cmd_namespace, _AUTH),
            "IDLE": (self.cmd_idle, _AUTH),
            "CHECK": (self.cmd_check, _SELECTED),
            "CLOSE": (self.cmd_close, _SELECTED),
            "UNSELECT": (self.cmd_unselect, _SELECTED),
            "EXPUNGE": (partial(self.cmd_expunge, uid=False), _SELECTED),
            "SEARCH": (partial(self.cmd_search, uid=False), _SELECTED),
            "FETCH": (partial(self.cmd_fetch, uid=False), _SELECTED),
            "STORE": (partial(self.cmd_store, uid=False), _SELECTED),
            "COPY": (partial(self.cmd_copy, uid=False, move=False), _SELECTED),
            "MOVE": (partial(self.cmd_copy, uid=False, move=True), _SELECTED),
            "UID": (self.cmd_uid, _SELECTED),
        }

    # -- transport ---------------------------------------------------------------------------

    @property
    def peer_cert(self) -> bytes | None:
        obj = self.writer.get_extra_info("ssl_object")
        return obj.getpeercert(binary_form=True) if obj is not None else None

    def emit(self, data: bytes) -> None:
        self.writer.write(data)

    async def flush(self) -> None:
        await asyncio.wait_for(self.writer.drain(), self.server.idle_timeout)

    async def send(self, line: str) -> None:
        self.emit(line.replace("\r", " ").replace("\n", " ").encode("utf-8") + b"\r\n")
        await self.flush()

    async def readline(self, timeout: float | None = -1.0) -> bytes:
        wait = self.server.idle_timeout if timeout == -1.0 else timeout
        try:
            line = await asyncio.wait_for(self.reader.readuntil(b"\n"), wait)
        except asyncio.LimitOverrunError:
            raise _LineTooLong() from None
        except asyncio.IncompleteReadError:
            raise _Disconnected() from None
        return line[:-2] if line.endswith(b"\r\n") else line[:-1]

    async def readexactly(self, size: int) -> bytes:
        try:
            return await asyncio.wait_for(self.reader.readexactly(size), self.server.idle_timeout)
        except asyncio.IncompleteReadError:
            raise _Disconnected() from None

    async def discard(self, size: int) -> None:
        """Consume a refused non-synchronising literal without keeping it (RFC 7888 §4)."""
        while size > 0:
            chunk = await asyncio.wait_for(
                self.reader.read(min(size, 65536)), self.server.idle_timeout
            )
            if not chunk:
                raise _Disconnected()
            size -= len(chunk)

    async def read_command(self) -> tuple[str, list[bytes]]:
        """One command with its literals (RFC 3501 §2.2.1, §7.5; RFC 7888 LITERAL+).

        A synchronising literal is invited with "+ Ready" only once its size is known to fit;
        a too large one is refused right away (the client then does not send it). A too large
        non-synchronising literal is read and dropped in fixed chunks, never held in memory.
        """
        line = await self.readline()
        tag = line.split(b" ", 1)[0].decode("ascii", "replace")
        parts: list[bytes] = []
        total = 0
        while True:
            m = _LITERAL_AT_END.search(line)
            if not m:
                parts.append(line)
                return tag, parts
            parts.append(line[: m.start()])
            size, sync = int(m.group(1)), not m.group(2)
            total += size
            if total > self.server.max_literal:
                if sync:
                    raise _TooBig(tag)
                await self.discard(size)
                while True:  # drop the rest of the command, further literals included
                    line = await self.readline()
                    m = _LITERAL_AT_END.search(line)
                    if not m or not m.group(2):
                        break
                    await self.discard(int(m.group(1)))
                raise _TooBig(tag)
            if sync:
                self.emit(b"+ Ready\r\n")
                await self.flush()
            parts.append(_Lit(await self.readexactly(size)))
            line = await self.readline()

    async def close(self) -> None:
        """Close gracefully (TLS close_notify) for a bounded time, else drop the transport."""
        transport = self.writer.transport
        if self.aborted:
            transport.abort()
            return
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except asyncio.CancelledError:
            transport.abort()
            raise
        except Exception:
            transport.abort()

    # -- main loop ---------------------------------------------------------------------------

    def capabilities(self) -> str:
        caps = ["IMAP4rev1", "LITERAL+", "ID", "IDLE", "NAMESPACE", "UIDPLUS", "MOVE"]
        caps += ["UNSELECT", "CHILDREN", "SPECIAL-USE", f"APPENDLIMIT={self.server.max_literal}"]
        if not self.tls:
            # RFC 3501 §6.2.3 / §7.2.1: no mechanism and no LOGIN until the channel is private.
            caps += ["STARTTLS", "LOGINDISABLED"]
        elif self.mailbox is None:
            caps += ["SASL-IR", "AUTH=XOAUTH2", "AUTH=OAUTHBEARER"]
            if self.peer_cert:
                caps.append("AUTH=EXTERNAL")
        return " ".join(caps)

    async def run(self) -> None:
        try:
            await self.send(
                f"* OK [CAPABILITY {self.capabilities()}] {self.server.hostname} "
                "IMAP4rev1 parcours prêt"
            )
            while not self.closing:
                try:
                    tag, parts = await self.read_command()
                except _TooBig as exc:
                    tag = exc.tag if _valid_tag(exc.tag) else "*"
                    await self.send(
                        f"{tag} NO [TOOBIG] Littéral trop grand "
                        f"(maximum {self.server.max_literal} octets)"
                    )
                    continue
                await self.dispatch(tag, parts)
        except TimeoutError:
            with contextlib.suppress(Exception):
                self.emit("* BYE Délai d'inactivité dépassé\r\n".encode())
                await asyncio.wait_for(self.writer.drain(), 5)
        except _LineTooLong:
            with contextlib.suppress(Exception):
                self.emit(b"* BYE Ligne de commande trop longue\r\n")
                await asyncio.wait_for(self.writer.drain(), 5)
        except (_Disconnected, ConnectionError, ssl.SSLError, EOFError):
            pass
        except asyncio.CancelledError:  # server stopping: no graceful goodbye
            self.aborted = True
            raise
        finally:
            self.unselect()
            await self.close()

    async def dispatch(self, tag: str, parts: list[bytes]) -> None:
        if not _valid_tag(tag):
            await self.send("* BAD Étiquette de commande invalide")
            return
        try:
            tokens = _tokens([parts[0][len(tag.encode()) :], *parts[1:]])
            if not tokens or not isinstance(tokens[0], str):
                raise _Bad("Commande manquante")
            name = tokens[0].upper()
            entry = self.commands.get(name)
            if entry is None:
                raise _Bad(f"Commande inconnue : {name[:30]}")
            handler, state = entry
            if state == _NONAUTH and self.mailbox is not None:
                raise _Bad("Déjà authentifié")
            if state in (_AUTH, _SELECTED) and self.mailbox is None:
                raise _Bad("Authentification requise")
            if state == _SELECTED and self.view is None:
                raise _Bad("Aucun dossier sélectionné")
            log.debug("imap %s %s", self.mailbox or self.peer, name)
            result = await handler(tag, tokens[1:])
            if result is None or (self.closing and name != "LOGOUT"):
                return
            sub = tokens[1].upper() if name == "UID" and len(tokens) > 1 else name
            if self.view is not None and name not in ("SELECT", "EXAMINE"):
                await self.resync(allow_expunge=sub not in _NO_EXPUNGE or name == "UID")
            if not self.closing or name == "LOGOUT":
                await self.send(f"{tag} OK {result}")
        except _Bad as exc:
            await self.send(f"{tag} BAD {exc}")
        except _No as exc:
            code = f"[{exc.code}] " if exc.code else ""
            await self.send(f"{tag} NO {code}{exc}")
        except FolderExists as exc:
            await self.send(f"{tag} NO [ALREADYEXISTS] {exc}")
        except FolderNotFound as exc:
            await self.send(f"{tag} NO [NONEXISTENT] {exc}")
        except MailStoreError as exc:
            await self.send(f"{tag} NO [CANNOT] {exc}")
        except (TimeoutError, _Disconnected, _LineTooLong, ConnectionError, ssl.SSLError):
            raise
        except Exception:
            log.exception("imap command failed (%s)", self.mailbox or self.peer)
            await self.send(f"{tag} NO [SERVERBUG] Erreur interne du serveur")

    async def event(self, kind: str, mailbox: str | None, details: dict[str, object]) -> None:
        hook = self.server.on_event
        if hook is None:
            return
        try:
            await asyncio.to_thread(hook, kind, mailbox, details)
        except Exception:  # a failing trace hook must not break the session; it is logged
            log.exception("imap event hook failed for %s", kind)

    # -- selected-folder bookkeeping ---------------------------------------------------------

    def unselect(self) -> None:
        if self.view is not None:
            self.view.unsubscribe()
            self.view = None

    def close_view(self) -> None:
        """This session deleted or renamed its own selected folder: it leaves the selected
        state and says so with the CLOSED response code (RFC 7162 §3.2.11, RFC 9051 §7.1);
        clients that do not know the code ignore it (RFC 3501 §7.1)."""
        self.unselect()
        self.emit("* OK [CLOSED] Dossier sélectionné fermé\r\n".encode())

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # loop already closed: the session is gone
            self.loop.call_soon_threadsafe(self.changed.set)

    def emit_expunged(self, uids: Iterable[int]) -> None:
        """Untagged EXPUNGE in descending sequence order: each number is then valid as sent,
        without the client renumbering in between (RFC 3501 §7.4.1)."""
        view = self.view
        assert view is not None
        seqs = sorted((s for s in (view.seq_of(u) for u in uids) if s is not None), reverse=True)
        for seq in seqs:
            uid = view.uids.pop(seq - 1)
            view.info.pop(uid, None)
            self.emit(b"* %d EXPUNGE\r\n" % seq)

    async def resync(self, allow_expunge: bool) -> None:
        """Tell the client what changed in the selected folder since it last heard: EXISTS for
        new messages, FETCH FLAGS for flag changes, EXPUNGE where allowed (RFC 3501 §7.3.1,
        §7.4.1). Changes made by other sessions or processes arrive this way."""
        view = self.view
        if view is None:
            return
        try:
            snap = await asyncio.to_thread(self.store.snapshot, self.mailbox or "", view.name)
        except FolderNotFound:
            snap = None
        if snap is None or snap.uidvalidity != view.uidvalidity:
            self.unselect()
            await self.send("* BYE Le dossier sélectionné a été supprimé ou renommé")
            self.closing = True
            return
        current = {m.uid: m for m in snap.messages}
        if allow_expunge:
            self.emit_expunged([u for u in view.uids if u not in current])
        for seq, uid in enumerate(view.uids, 1):
            now = current.get(uid)
            if now is None:
                continue
            if now.flags != view.info[uid].flags:
                self.emit(b"* %d FETCH (UID %d FLAGS %s)\r\n" % (seq, uid, _flag_list(now.flags)))
            view.info[uid] = now
        top = view.uids[-1] if view.uids else 0
        new = [m for m in snap.messages if m.uid > top]
        if new:
            for m in new:
                view.uids.append(m.uid)
                view.info[m.uid] = m
            self.emit(b"* %d EXISTS\r\n" % len(view.uids))
        await self.flush()

    def targets(self, tok: Token, uid: bool) -> list[tuple[int, int]]:
        """(sequence number, UID) pairs of a sequence or UID set, in ascending order. A UID
        range such as ``n:*`` always includes the last message (RFC 3501 §6.4.8); an
        out-of-range sequence number is an error (RFC 9051 §6.4)."""
        view = self.view
        assert view is not None
        ranges = _parse_set(_atom(tok, "ensemble de messages"))
        uids = view.uids
        if uid:
            if not uids:
                return []
            top = uids[-1]
            return [(i + 1, u) for i, u in enumerate(uids) if _in_ranges(u, ranges, top)]
        seqs: set[int] = set()
        for a, b in ranges:
            lo, hi = sorted((len(uids) if a is None else a, len(uids) if b is None else b))
            if lo < 1 or hi > len(uids):
                raise _Bad("Numéro de séquence invalide")
            seqs.update(range(lo, hi + 1))
        return [(s, uids[s - 1]) for s in sorted(seqs)]

    def mailbox_arg(self, tok: Token) -> str:
        try:
            name = decode_mailbox(_astr(tok))
        except ValueError:
            raise _Bad(
                "Nom de dossier mal encodé (UTF-7 modifié attendu, RFC 3501 §5.1.3)"
            ) from None
        try:
            return normalise_folder(name)
        except InvalidFolderName as exc:
            raise _No(str(exc), "CANNOT") from None

    # -- any state ---------------------------------------------------------------------------

    async def cmd_capability(self, tag: str, args: list[Token]) -> str:
        self.emit(f"* CAPABILITY {self.capabilities()}\r\n".encode())
        return "CAPABILITY terminé"

    async def cmd_noop(self, tag: str, args: list[Token]) -> str:
        return "NOOP terminé"

    async def cmd_logout(self, tag: str, args: list[Token]) -> str:
        self.emit("* BYE Déconnexion\r\n".encode())
        self.unselect()
        self.closing = True
        return "LOGOUT terminé"

    async def cmd_id(self, tag: str, args: list[Token]) -> str:
        """RFC 2971: the client's identification is not logged (it is free text)."""
        self.emit(b'* ID ("name" "parcours" "vendor" "parcours")\r\n')
        return "ID terminé"

    # -- not authenticated -------------------------------------------------------------------

    async def cmd_starttls(self, tag: str, args: list[Token]) -> None:
        """RFC 3501 §6.2.1. Bytes pipelined after STARTTLS were sent in clear and could be an
        injection (CVE-2011-0411 class): such a connection is refused and closed. Reading is
        paused before the OK goes out, so the client's TLS hello cannot be swallowed by the
        plaintext stream buffer; ``start_tls`` resumes it under TLS."""
        if self.tls:
            raise _Bad("TLS est déjà actif")
        if self.reader._buffer:  # type: ignore[attr-defined]  # no public peek on StreamReader
            log.warning("imap plaintext data pipelined after STARTTLS from %s", self.peer)
            await self.send(f"{tag} BAD Données reçues en clair après STARTTLS : connexion fermée")
            self.closing = True
            return
        self.writer.transport.pause_reading()  # type: ignore[attr-defined]
        await self.send(f"{tag} OK Début de la négociation TLS")
        try:
            await self.writer.start_tls(
                self.server.ssl_context, ssl_handshake_timeout=self.server.handshake_timeout
            )
        except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
            log.info("imap STARTTLS handshake failed from %s: %s", self.peer, type(exc).__name__)
            self.closing = True
            return
        self.tls = True

    async def cmd_login(self, tag: str, args: list[Token]) -> str | None:
        """LOGIN for clients without OAuth: the password field carries an *access token*
        (validated by the authenticator like XOAUTH2's), never a stored password."""
        if not self.tls:
            raise _No("Connexion chiffrée requise : utilisez STARTTLS", "PRIVACYREQUIRED")
        if len(args) != 2:
            raise _Bad("LOGIN attend un identifiant et un jeton d'accès")
        user, token = _astr(args[0]), _astr(args[1])
        return await self.try_token(tag, "LOGIN", user or None, token)

    async def try_token(self, tag: str, method: str, user: str | None, token: str) -> str | None:
        try:
            address = await asyncio.to_thread(self.server.authenticator.token, user, token)
        except AuthenticationFailed as exc:
            await self.auth_failed(tag, method, str(exc), user)
            return None
        return await self.auth_ok(method, address)

    async def auth_ok(self, method: str, address: str) -> str:
        address = address.strip().lower()
        await asyncio.to_thread(self.store.ensure_mailbox, address)
        self.mailbox = address
        self.failures = 0
        obj = self.writer.get_extra_info("ssl_object")
        tls_version = obj.version() if obj is not None else None
        log.info("imap login %s method=%s peer=%s", address, method, self.peer)
        await self.event(
            "login", address, {"method": method, "peer": self.peer, "tls": tls_version}
        )
        return f"[CAPABILITY {self.capabilities()}] Authentification réussie"

    async def auth_failed(self, tag: str, method: str, reason: str, user: str | None) -> None:
        self.failures += 1
        log.info("imap login failed method=%s peer=%s attempt=%d", method, self.peer, self.failures)
        await self.event(
            "login_failed",
            None,
            {"method": method, "peer": self.peer, "reason": reason, "user": user},
        )
        await self.send(f"{tag} NO [AUTHENTICATIONFAILED] {reason}")
        if self.failures >= self.server.max_auth_failures:
            await self.send("* BYE Trop d'échecs d'authentification : connexion fermée")
            self.closing = True

    async def sasl_response(self, challenge: bytes = b"") -> bytes | None:
        """One client response of an AUTHENTICATE exchange (RFC 3501 §6.2.2); None if the
        client cancelled with "*"."""
        self.emit(b"+ " + base64.b64encode(challenge) + b"\r\n")
        await self.flush()
        line = await self.readline()
        if line.strip() == b"*":
            return None
        try:
            return base64.b64decode(line.strip(), validate=True)
        except binascii.Error:
            raise _Bad("Réponse SASL mal encodée (base64 attendu)") from None

    async def cmd_authenticate(self, tag: str, args: list[Token]) -> str | None:
        if not self.tls:
            raise _No("Connexion chiffrée requise : utilisez STARTTLS", "PRIVACYREQUIRED")
        if not args or len(args) > 2:
            raise _Bad("AUTHENTICATE attend un mécanisme")
        mech = _atom(args[0], "mécanisme").upper()
        if mech not in ("XOAUTH2", "OAUTHBEARER", "EXTERNAL"):
            raise _No("Mécanisme d'authentification non pris en charge", "CANNOT")
        if len(args) == 2:  # RFC 4959 SASL-IR: "=" is an empty initial response
            initial = _astr(args[1])
            try:
                response = b"" if initial == "=" else base64.b64decode(initial, validate=True)
            except binascii.Error:
                raise _Bad("Réponse SASL initiale mal encodée (base64 attendu)") from None
        else:
            got = await self.sasl_response()
            if got is None:
                raise _Bad("Authentification annulée par le client")
            response = got
        if mech == "EXTERNAL":
            return await self.sasl_external(tag, response)
        try:
            user, token = (
                _parse_xoauth2(response) if mech == "XOAUTH2" else _parse_oauthbearer(response)
            )
        except ValueError as exc:
            await self.auth_failed(tag, mech, str(exc), None)
            return None
        try:
            address = await asyncio.to_thread(self.server.authenticator.token, user, token)
        except AuthenticationFailed as exc:
            # XOAUTH2 (Google's protocol) and OAUTHBEARER (RFC 7628 §3.2.2) report a failure as
            # a JSON challenge; the client answers (empty line / %x01) and then gets the NO.
            error = (
                {"status": "401", "schemes": "bearer"}
                if mech == "XOAUTH2"
                else {"status": "invalid_token", "scope": "openid"}
            )
            with contextlib.suppress(_Bad):
                await self.sasl_response(json.dumps(error).encode())
            await self.auth_failed(tag, mech, str(exc), user)
            return None
        return await self.auth_ok(mech, address)

    async def sasl_external(self, tag: str, response: bytes) -> str | None:
        """RFC 4422 appendix A: the identity is the TLS client certificate; the optional
        response is an authorisation identity the authenticator may check."""
        cert = self.peer_cert
        authzid = response.decode("utf-8", "replace") or None
        if not cert:
            await self.auth_failed(tag, "EXTERNAL", "Aucun certificat client présenté", authzid)
            return None
        try:
            address = await asyncio.to_thread(self.server.authenticator.certificate, authzid, cert)
        except AuthenticationFailed as exc:
            await self.auth_failed(tag, "EXTERNAL", str(exc), authzid)
            return None
        return await self.auth_ok("EXTERNAL", address)

    # -- authenticated -----------------------------------------------------------------------

    async def cmd_namespace(self, tag: str, args: list[Token]) -> str:
        """RFC 2342: one personal namespace, no shared or other users' namespaces."""
        self.emit(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
        return "NAMESPACE terminé"

    async def cmd_select(self, tag: str, args: list[Token], readonly: bool) -> str:
        """RFC 3501 §6.3.1-2. A failed SELECT leaves no folder selected."""
        if len(args) != 1:
            raise _Bad("SELECT/EXAMINE attend un nom de dossier")
        self.unselect()
        name = self.mailbox_arg(args[0])
        try:
            snap = await asyncio.to_thread(self.store.snapshot, self.mailbox or "", name)
        except FolderNotFound:
            raise _No("Ce dossier n'existe pas", "NONEXISTENT") from None
        unsubscribe = self.store.subscribe(self.mailbox or "", name, self._wake)
        self.changed.clear()
        self.view = _View(
            name,
            readonly,
            snap.uidvalidity,
            [m.uid for m in snap.messages],
            {m.uid: m for m in snap.messages},
            unsubscribe,
        )
        keywords = {f for m in snap.messages for f in m.flags if f not in SYSTEM_FLAGS}
        flags = _flag_list([*SYSTEM_FLAGS, *keywords])
        self.emit(b"* FLAGS " + flags + b"\r\n")
        permanent = b"()" if readonly else _flag_list([*SYSTEM_FLAGS, *keywords])[:-1] + b" \\*)"
        self.emit(b"* OK [PERMANENTFLAGS " + permanent + b"] Drapeaux modifiables\r\n")
        self.emit(b"* %d EXISTS\r\n* 0 RECENT\r\n" % len(snap.messages))
        unseen = next((i for i, m in enumerate(snap.messages, 1) if "\\Seen" not in m.flags), None)
        if unseen is not None:
            self.emit(f"* OK [UNSEEN {unseen}] Premier message non lu\r\n".encode())
        self.emit(f"* OK [UIDVALIDITY {snap.uidvalidity}] UID valides\r\n".encode())
        self.emit(f"* OK [UIDNEXT {snap.uidnext}] Prochain UID\r\n".encode())
        if readonly:
            return "[READ-ONLY] EXAMINE terminé"
        return "[READ-WRITE] SELECT terminé"

    async def cmd_create(self, tag: str, args: list[Token]) -> str:
        if len(args) != 1:
            raise _Bad("CREATE attend un nom de dossier")
        name = self.mailbox_arg(args[0])
        await asyncio.to_thread(self.store.create_folder, self.mailbox or "", name)
        return "CREATE terminé"

    async def cmd_delete(self, tag: str, args: list[Token]) -> str:
        if len(args) != 1:
            raise _Bad("DELETE attend un nom de dossier")
        name = self.mailbox_arg(args[0])
        await asyncio.to_thread(self.store.delete_folder, self.mailbox or "", name)
        if self.view is not None and self.view.name == name:
            self.close_view()
        return "DELETE terminé"

    async def cmd_rename(self, tag: str, args: list[Token]) -> str:
        if len(args) != 2:
            raise _Bad("RENAME attend deux noms de dossier")
        old, new = self.mailbox_arg(args[0]), self.mailbox_arg(args[1])
        await asyncio.to_thread(self.store.rename_folder, self.mailbox or "", old, new)
        if self.view is not None and (
            self.view.name == old or self.view.name.startswith(old + DELIMITER)
        ):
            self.close_view()
        return "RENAME terminé"

    async def cmd_subscribe(self, tag: str, args: list[Token], subscribed: bool) -> str:
        if len(args) != 1:
            raise _Bad("Nom de dossier attendu")
        name = self.mailbox_arg(args[0])
        await asyncio.to_thread(self.store.set_subscribed, self.mailbox or "", name, subscribed)
        return "SUBSCRIBE terminé" if subscribed else "UNSUBSCRIBE terminé"

    async def cmd_list(self, tag: str, args: list[Token], lsub: bool) -> str:
        """RFC 3501 §6.3.8-9 with RFC 3348 CHILDREN and RFC 6154 §2 special-use attributes.
        The RFC 5258 forms ``LIST (SPECIAL-USE|SUBSCRIBED) ...`` and ``RETURN (...)`` are
        understood because clients send them once they see SPECIAL-USE."""
        select_opts: set[str] = set()
        return_opts: set[str] = set()
        cur = _Cursor(args)
        if not lsub and args and isinstance(args[0], list):
            select_opts = {_atom(t).upper() for t in cur.next()}
        reference, pattern = _astr(cur.next("référence")), _astr(cur.next("motif"))
        if not cur.done():
            word = cur.next()
            opts = cur.next("options RETURN")
            if not isinstance(word, str) or word.upper() != "RETURN" or not isinstance(opts, list):
                raise _Bad("Syntaxe LIST invalide")
            return_opts = {_atom(t).upper() for t in opts}
            if not cur.done():
                raise _Bad("Syntaxe LIST invalide")
        verb = "LSUB" if lsub else "LIST"
        if pattern == "" and not lsub:
            self.emit(b'* LIST (\\Noselect) "/" ""\r\n')
            return "LIST terminé"
        try:
            full = decode_mailbox(reference) + decode_mailbox(pattern)
        except ValueError:
            raise _Bad("Motif mal encodé (UTF-7 modifié attendu)") from None
        regex = re.compile(
            "".join(".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in full)
            + r"\Z",
            re.S,
        )
        inbox_regex = re.compile(regex.pattern, re.S | re.I)
        folders = {
            f.name: f for f in await asyncio.to_thread(self.store.folders, self.mailbox or "")
        }
        names = set(folders)
        for name in list(folders):  # parents that do not exist (a parent deleted, RFC 3501 §6.3.4)
            parts = name.split(DELIMITER)
            names.update(DELIMITER.join(parts[:i]) for i in range(1, len(parts)))
        subscribed_only = lsub or "SUBSCRIBED" in select_opts
        show_subscribed = "SUBSCRIBED" in select_opts or "SUBSCRIBED" in return_opts
        for name in sorted(names, key=lambda n: (n != "INBOX", n)):
            if not (inbox_regex if name == "INBOX" else regex).match(name):
                continue
            folder = folders.get(name)
            if subscribed_only and not (folder and folder.subscribed):
                continue
            if "SPECIAL-USE" in select_opts and not (folder and folder.special_use):
                continue
            attrs = [] if folder else ["\\Noselect"]
            children = any(other.startswith(name + DELIMITER) for other in names)
            attrs.append("\\HasChildren" if children else "\\HasNoChildren")
            if folder and folder.special_use:
                attrs.append(folder.special_use)
            if show_subscribed and folder and folder.subscribed:
                attrs.append("\\Subscribed")
            self.emit(
                f'* {verb} ({" ".join(attrs)}) "/" '.encode()
                + _quote(encode_mailbox(name))
                + b"\r\n"
            )
        return f"{verb} terminé"

    async def cmd_status(self, tag: str, args: list[Token]) -> str:
        """RFC 3501 §6.3.10."""
        if len(args) != 2 or not isinstance(args[1], list) or not args[1]:
            raise _Bad("STATUS attend un dossier et une liste d'éléments")
        name = self.mailbox_arg(args[0])
        wanted = [_atom(t).upper() for t in args[1]]
        try:
            status = await asyncio.to_thread(self.store.status, self.mailbox or "", name)
        except FolderNotFound:
            raise _No("Ce dossier n'existe pas", "NONEXISTENT") from None
        values = {
            "MESSAGES": status.messages,
            "RECENT": 0,
            "UIDNEXT": status.uidnext,
            "UIDVALIDITY": status.uidvalidity,
            "UNSEEN": status.unseen,
        }
        unknown = [w for w in wanted if w not in values]
        if unknown:
            raise _Bad(f"Élément STATUS inconnu : {unknown[0][:20]}")
        body = " ".join(f"{w} {values[w]}" for w in wanted)
        self.emit(b"* STATUS " + _quote(encode_mailbox(name)) + f" ({body})\r\n".encode())
        return "STATUS terminé"

    async def cmd_append(self, tag: str, args: list[Token]) -> str:
        """RFC 3501 §6.3.11; the tagged OK carries RFC 4315 §3 APPENDUID."""
        if len(args) < 2:
            raise _Bad("APPEND attend un dossier et un message")
        name = self.mailbox_arg(args[0])
        rest = args[1:]
        flags: list[str] = []
        when = None
        if rest and isinstance(rest[0], list):
            flags = _flag_args(rest[0])
            rest = rest[1:]
        if len(rest) == 2:
            when = _parse_datetime(_astr(rest[0]))
            rest = rest[1:]
        if len(rest) != 1 or not isinstance(rest[0], bytes):
            raise _Bad("APPEND attend le message sous forme de littéral")
        raw = bytes(rest[0])
        if not raw.strip():
            raise _No("Message vide refusé", "CANNOT")
        try:
            validity, uid = await asyncio.to_thread(
                self.store.append, self.mailbox or "", name, raw, flags=flags, internal_date=when
            )
        except FolderNotFound:
            raise _No("Ce dossier n'existe pas", "TRYCREATE") from None
        return f"[APPENDUID {validity} {uid}] APPEND terminé"

    async def cmd_idle(self, tag: str, args: list[Token]) -> None:
        """RFC 2177. Woken at once by deliveries in this process (the store's notifier), and
        polls the database every ``idle_poll`` seconds for other processes' deliveries. The
        idle timeout bounds it like any other wait."""
        if args:
            raise _Bad("IDLE ne prend pas d'argument")
        await self.send("+ idling")
        read = asyncio.ensure_future(self.readline(timeout=None))
        deadline = self.loop.time() + self.server.idle_timeout
        try:
            while True:
                self.changed.clear()
                if self.view is not None:
                    await self.resync(allow_expunge=True)
                    if self.closing:
                        return
                remaining = deadline - self.loop.time()
                if remaining <= 0:
                    raise TimeoutError
                woken = asyncio.ensure_future(self.changed.wait())
                done, _ = await asyncio.wait(
                    {read, woken},
                    timeout=min(self.server.idle_poll, remaining),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                woken.cancel()
                if read in done:
                    line = read.result()
                    if line.strip().upper() == b"DONE":
                        if self.view is not None:
                            await self.resync(allow_expunge=True)
                        await self.send(f"{tag} OK IDLE terminé")
                    else:
                        await self.send(f"{tag} BAD DONE attendu pour terminer IDLE")
                    return
        finally:
            if not read.done():
                read.cancel()
                with contextlib.suppress(BaseException):
                    await read

    # -- selected ----------------------------------------------------------------------------

    async def cmd_check(self, tag: str, args: list[Token]) -> str:
        return "CHECK terminé"

    async def cmd_close(self, tag: str, args: list[Token]) -> str:
        """RFC 3501 §6.4.2: expunge silently (read-write only), then unselect."""
        view = self.view
        assert view is not None
        if not view.readonly:
            removed = await asyncio.to_thread(self.store.expunge, self.mailbox or "", view.name)
            if removed:
                await self.deleted_event(view, removed)
        self.unselect()
        return "CLOSE terminé"

    async def cmd_unselect(self, tag: str, args: list[Token]) -> str:
        """RFC 3691: leave the folder without expunging."""
        self.unselect()
        return "UNSELECT terminé"

    async def deleted_event(self, view: _View, uids: list[int]) -> None:
        ids = [view.info[u].message_id for u in uids if u in view.info]
        await self.event(
            "delete", self.mailbox, {"folder": view.name, "uids": uids, "message_ids": ids}
        )

    async def cmd_expunge(self, tag: str, args: list[Token], uid: bool) -> str:
        """RFC 3501 §6.4.3; UID EXPUNGE (RFC 4315 §2.1) limits it to the given UIDs."""
        view = self.view
        assert view is not None
        if view.readonly:
            raise _No("Dossier ouvert en lecture seule", "CANNOT")
        only = None
        if uid:
            if len(args) != 1:
                raise _Bad("UID EXPUNGE attend un ensemble d'UID")
            only = [u for _, u in self.targets(args[0], uid=True)]
        elif args:
            raise _Bad("EXPUNGE ne prend pas d'argument")
        removed = await asyncio.to_thread(self.store.expunge, self.mailbox or "", view.name, only)
        await self.deleted_event(view, removed)
        self.emit_expunged(removed)
        return "EXPUNGE terminé"

    async def cmd_uid(self, tag: str, args: list[Token]) -> str | None:
        """RFC 3501 §6.4.8 and RFC 4315 / RFC 6851 UID forms."""
        if not args:
            raise _Bad("UID attend une commande")
        sub = _atom(args[0], "commande").upper()
        handlers: dict[str, Callable[..., Any]] = {
            "FETCH": self.cmd_fetch,
            "STORE": self.cmd_store,
            "SEARCH": self.cmd_search,
            "EXPUNGE": self.cmd_expunge,
            "COPY": partial(self.cmd_copy, move=False),
            "MOVE": partial(self.cmd_copy, move=True),
        }
        handler = handlers.get(sub)
        if handler is None:
            raise _Bad(f"Commande UID inconnue : {sub[:20]}")
        result: str | None = await handler(tag, args[1:], uid=True)
        return result

    async def cmd_fetch(self, tag: str, args: list[Token], uid: bool) -> str:
        view = self.view
        assert view is not None
        if len(args) != 2:
            raise _Bad("FETCH attend un ensemble de messages et des attributs")
        targets = self.targets(args[0], uid)
        items = _parse_fetch_items(args[1])
        if uid and not any(i.kind == "UID" for i in items):
            items.insert(0, _Item("UID"))  # RFC 3501 §6.4.8: UID FETCH always returns UID
        need_raw = any(i.needs_raw for i in items)
        marks_seen = not view.readonly and any(i.sets_seen for i in items)
        reads = any(i.reads_content for i in items)
        missing = broken = 0
        for seq, msg_uid in targets:
            info = view.info[msg_uid]
            raw = b""
            if need_raw:
                try:
                    raw = await asyncio.to_thread(
                        self.store.fetch_raw, self.mailbox or "", view.name, msg_uid
                    )
                except MessageNotFound:
                    missing += 1
                    continue
                except DecryptionError:
                    log.error("imap message does not decrypt: %s uid=%d", self.mailbox, msg_uid)
                    broken += 1
                    continue
            changed = False
            if marks_seen and "\\Seen" not in info.flags:
                result = await asyncio.to_thread(
                    self.store.add_flags, self.mailbox or "", view.name, [msg_uid], ["\\Seen"]
                )
                if msg_uid in result:
                    info = replace(info, flags=result[msg_uid])
                    view.info[msg_uid] = info
                    changed = True
            self.emit(b"* %d FETCH (" % seq + _render_items(items, info, raw, changed) + b")\r\n")
            await self.flush()
            if reads:
                await self.event(
                    "read",
                    self.mailbox,
                    {"folder": view.name, "uid": msg_uid, "message_id": info.message_id},
                )
        if broken:
            raise _No("Message illisible : son contenu chiffré ne s'authentifie pas", "CORRUPTION")
        if missing:
            raise _No("Certains messages ont été supprimés entre-temps", "EXPUNGEISSUED")
        return "FETCH terminé"

    async def cmd_store(self, tag: str, args: list[Token], uid: bool) -> str:
        """RFC 3501 §6.4.6."""
        view = self.view
        assert view is not None
        if len(args) < 3:
            raise _Bad("STORE attend un ensemble, FLAGS/+FLAGS/-FLAGS et des drapeaux")
        if view.readonly:
            raise _No("Dossier ouvert en lecture seule", "CANNOT")
        targets = self.targets(args[0], uid)
        m = re.fullmatch(r"([+-]?)FLAGS(\.SILENT)?", _atom(args[1]).upper())
        if not m:
            raise _Bad("STORE accepte FLAGS, +FLAGS ou -FLAGS (avec .SILENT)")
        values = args[2] if len(args) == 3 and isinstance(args[2], list) else args[2:]
        flags = _flag_args(values)
        mode = {"": "set", "+": "add", "-": "remove"}[m.group(1)]
        result = await asyncio.to_thread(
            self.store.store_flags,
            self.mailbox or "",
            view.name,
            [u for _, u in targets],
            flags,
            mode,
        )
        for seq, msg_uid in targets:
            if msg_uid not in result or msg_uid not in view.info:
                continue
            view.info[msg_uid] = replace(view.info[msg_uid], flags=result[msg_uid])
            if not m.group(2):
                uid_part = b"UID %d " % msg_uid if uid else b""
                self.emit(
                    b"* %d FETCH (%sFLAGS %s)\r\n" % (seq, uid_part, _flag_list(result[msg_uid]))
                )
        return "STORE terminé"

    async def cmd_copy(self, tag: str, args: list[Token], uid: bool, move: bool) -> str:
        """RFC 3501 §6.4.7 COPY and RFC 6851 MOVE, with RFC 4315 COPYUID."""
        view = self.view
        assert view is not None
        verb = "MOVE" if move else "COPY"
        if len(args) != 2:
            raise _Bad(f"{verb} attend un ensemble de messages et un dossier")
        if move and view.readonly:
            raise _No("Dossier ouvert en lecture seule", "CANNOT")
        targets = self.targets(args[0], uid)
        dest = self.mailbox_arg(args[1])
        action = self.store.move if move else self.store.copy
        try:
            validity, mapping = await asyncio.to_thread(
                action, self.mailbox or "", view.name, [u for _, u in targets], dest
            )
        except FolderNotFound:
            raise _No("Le dossier de destination n'existe pas", "TRYCREATE") from None
        code = ""
        if mapping:
            code = (
                f"[COPYUID {validity} {_format_set([s for s, _ in mapping])} "
                f"{_format_set([d for _, d in mapping])}] "
            )
        if not move:
            return f"{code}COPY terminé"
        if mapping:
            # RFC 6851 §4.3: COPYUID goes in an untagged OK before the EXPUNGE responses.
            self.emit(f"* OK {code}Messages déplacés\r\n".encode())
            await self.event(
                "move",
                self.mailbox,
                {"from": view.name, "to": dest, "uids": [[s, d] for s, d in mapping]},
            )
            self.emit_expunged([s for s, _ in mapping])
        return "MOVE terminé"

    async def cmd_search(self, tag: str, args: list[Token], uid: bool) -> str:
        """RFC 3501 §6.4.4. Substring matches are case-insensitive on decoded headers (RFC 2047)
        and decoded text parts, so a French subject matches whatever its encoding."""
        view = self.view
        assert view is not None
        cur = _Cursor(args)
        if args and isinstance(args[0], str) and args[0].upper() == "CHARSET":
            cur.next()
            charset = _astr(cur.next("jeu de caractères")).upper()
            if charset not in ("UTF-8", "US-ASCII"):
                raise _No("Jeu de caractères non pris en charge", "BADCHARSET (UTF-8 US-ASCII)")
        nodes = []
        while not cur.done():
            nodes.append(_search_key(cur))
        if not nodes:
            raise _Bad("SEARCH attend au moins un critère")
        tree: tuple[Any, ...] = ("AND", nodes)
        candidates = [(i + 1, view.info[u]) for i, u in enumerate(view.uids)]
        top_uid = view.uids[-1] if view.uids else 0
        mailbox, folder = self.mailbox or "", view.name
        content = _needs_content(tree)

        def run() -> list[int]:
            found: list[int] = []
            for seq, info in candidates:

                def load(u: int = info.uid) -> bytes | None:
                    if not content:
                        return None
                    try:
                        return self.store.fetch_raw(mailbox, folder, u)
                    except (MessageNotFound, DecryptionError):
                        return None

                if _match(tree, _Candidate(seq, info, load), len(candidates), top_uid):
                    found.append(info.uid if uid else seq)
            return found

        found = await asyncio.to_thread(run)
        self.emit(("* SEARCH " + " ".join(map(str, found))).rstrip().encode() + b"\r\n")
        return "SEARCH terminé"


def _flag_args(tokens: Token) -> list[str]:
    """Flags of STORE/APPEND: system flags by their RFC 3501 §2.3.2 names, keywords as atoms."""
    system = {f.lower() for f in SYSTEM_FLAGS} | {"\\recent"}
    out: list[str] = []
    for tok in tokens:
        flag = _atom(tok, "drapeau")
        if flag.startswith("\\"):
            if flag.lower() not in system:
                raise _Bad(f"Drapeau système inconnu : {flag[:30]}")
        elif not re.fullmatch(r"[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|~]+", flag):
            raise _Bad("Mot-clé invalide")
        out.append(flag)
    return out


def _parse_xoauth2(data: bytes) -> tuple[str | None, str]:
    """``user=<user>^Aauth=Bearer <token>^A^A`` (Google's XOAUTH2)."""
    fields: dict[str, str] = {}
    for part in data.decode("utf-8", "replace").split("\x01"):
        key, sep, value = part.partition("=")
        if sep:
            fields[key.strip().lower()] = value
    scheme, _, token = fields.get("auth", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ValueError("Réponse XOAUTH2 invalide (auth=Bearer attendu)")
    return fields.get("user") or None, token.strip()


def _parse_oauthbearer(data: bytes) -> tuple[str | None, str]:
    """RFC 7628 §3.1: ``gs2-header ^A *(key=value ^A) ^A``; the gs2 header names the
    authorisation identity (``a=``, RFC 5801 saslname encoding)."""
    text = data.decode("utf-8", "replace")
    gs2, sep, rest = text.partition("\x01")
    if not sep:
        raise ValueError("Réponse OAUTHBEARER invalide")
    flags = gs2.split(",")
    if len(flags) < 2 or flags[0] not in ("n", "y"):
        raise ValueError("Réponse OAUTHBEARER invalide (liaison de canal non prise en charge)")
    user = None
    if flags[1].startswith("a="):
        user = flags[1][2:].replace("=2C", ",").replace("=3D", "=") or None
    fields: dict[str, str] = {}
    for part in rest.split("\x01"):
        key, eq, value = part.partition("=")
        if eq:
            fields[key.strip().lower()] = value
    scheme, _, token = fields.get("auth", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ValueError("Réponse OAUTHBEARER invalide (auth=Bearer attendu)")
    return user, token.strip()


def _render_items(items: list[_Item], info: MessageInfo, raw: bytes, flags_changed: bool) -> bytes:
    root_cache: list[_Entity] = []

    def root() -> _Entity:
        if not root_cache:
            root_cache.append(_parse_entity(raw))
        return root_cache[0]

    out: list[bytes] = []
    for item in items:
        kind = item.kind
        if kind == "FLAGS":
            out.append(b"FLAGS " + _flag_list(info.flags))
        elif kind == "UID":
            out.append(b"UID %d" % info.uid)
        elif kind == "INTERNALDATE":
            out.append(b"INTERNALDATE " + _format_internaldate(info.internal_date))
        elif kind == "RFC822.SIZE":
            out.append(b"RFC822.SIZE %d" % info.size)
        elif kind == "ENVELOPE":
            out.append(b"ENVELOPE " + _envelope(root()))
        elif kind == "BODYSTRUCTURE":
            out.append(b"BODYSTRUCTURE " + _bodystructure(root(), True))
        elif kind == "BODY":
            out.append(b"BODY " + _bodystructure(root(), False))
        elif kind == "RFC822":
            out.append(b"RFC822 " + _literal(raw))
        elif kind in ("RFC822.HEADER", "RFC822.TEXT"):
            header, body = _split_header(raw)
            out.append(kind.encode() + b" " + _literal(header if kind.endswith("HEADER") else body))
        else:
            assert item.section is not None
            data = _section_bytes(raw, root, item.section)
            name = b"BODY[" + item.section.label().encode("utf-8", "surrogateescape") + b"]"
            if item.partial is not None and data is not None:
                origin, length = item.partial
                data = data[origin : origin + length]
                name += b"<%d>" % origin
            out.append(name + b" " + (b"NIL" if data is None else _literal(data)))
    if flags_changed and not any(i.kind == "FLAGS" for i in items):
        out.append(b"FLAGS " + _flag_list(info.flags))  # RFC 3501 §6.4.5: \Seen was set
    return b" ".join(out)


# ---------------------------------------------------------------------------------------------
# Server


class ImapServer:
    """The IMAP listeners: ``port`` (plain, STARTTLS required before authentication) and
    ``tls_port`` (implicit TLS, RFC 8314); 0 picks a free port, None disables a listener.

    ``ssl_context`` is the server context; for SASL EXTERNAL the caller creates it with
    ``verify_mode = CERT_OPTIONAL`` and the accepted CA(s) loaded. ``on_event(kind, mailbox,
    details)`` is called in a worker thread for "login", "login_failed", "read", "delete" and
    "move" (details never hold a body, a subject or a token).
    """

    def __init__(
        self,
        store: MailStore,
        authenticator: Authenticator,
        ssl_context: ssl.SSLContext,
        *,
        host: str = "127.0.0.1",
        port: int | None = 0,
        tls_port: int | None = 0,
        on_event: EventHook | None = None,
        idle_timeout: float = 1800.0,
        max_literal: int = 50 * 1024 * 1024,
        hostname: str = "localhost",
        max_line: int = 64 * 1024,
        idle_poll: float = 5.0,
        max_auth_failures: int = 3,
        handshake_timeout: float = 30.0,
    ) -> None:
        self.store = store
        self.authenticator = authenticator
        self.ssl_context = ssl_context
        self.host = host
        self._port = port
        self._tls_port = tls_port
        self.on_event = on_event
        self.idle_timeout = idle_timeout
        self.max_literal = max_literal
        self.hostname = hostname
        self.max_line = max_line
        self.idle_poll = idle_poll
        self.max_auth_failures = max_auth_failures
        self.handshake_timeout = handshake_timeout
        self._plain: asyncio.Server | None = None
        self._tls: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int | None:
        return self._plain.sockets[0].getsockname()[1] if self._plain else None

    @property
    def tls_port(self) -> int | None:
        return self._tls.sockets[0].getsockname()[1] if self._tls else None

    async def start(self) -> None:
        if self._port is not None:
            self._plain = await asyncio.start_server(
                partial(self._serve, tls=False), self.host, self._port, limit=self.max_line
            )
        if self._tls_port is not None:
            self._tls = await asyncio.start_server(
                partial(self._serve, tls=True),
                self.host,
                self._tls_port,
                ssl=self.ssl_context,
                ssl_handshake_timeout=self.handshake_timeout,
                limit=self.max_line,
            )
        log.info("imap listening plain=%s tls=%s", self.port, self.tls_port)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: bool
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await _Session(self, reader, writer, tls).run()
        except asyncio.CancelledError:
            # stop() cancels sessions; ending normally keeps asyncio's stream callback from
            # logging the cancellation as an error.
            pass
        finally:
            self._sessions.discard(task)

    async def stop(self) -> None:
        for server in (self._plain, self._tls):
            if server is not None:
                server.close()
        tasks = list(self._sessions)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in (self._plain, self._tls):
            if server is not None:
                await server.wait_closed()


class ImapThread:
    """Runs an :class:`ImapServer` on its own event loop in a background thread (tests, CLI):
    ``with ImapThread(server): ...`` or ``start()``/``stop()``."""

    def __init__(self, server: ImapServer) -> None:
        self.server = server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ImapServer:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.server.start())
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()

        self._thread = threading.Thread(target=run, name="imap-server", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            raise errors[0]
        return self.server

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self.server.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)

    def __enter__(self) -> ImapServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = [
    "AuthenticationFailed",
    "Authenticator",
    "ImapServer",
    "ImapThread",
    "decode_mailbox",
    "encode_mailbox",
]
