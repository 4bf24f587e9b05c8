#!/usr/bin/env python3
"""ClickHouse HTTP interface in front of chdb-core (ClickHouse's in-process engine).

The dev rig has no Docker and no way to download a ClickHouse server binary, but PyPI ships
chdb-core: the real ClickHouse engine as a Python extension. This file puts the subset of
ClickHouse's HTTP protocol (port 8123) in front of it that clients such as the Rust
`clickhouse` crate (0.15.x, default settings) rely on:

* query text in the `query` URL parameter and/or the POST body, or in a multipart/form-data
  body (the crate sends that as soon as a query has server-side `param_*` parameters);
* `INSERT ... FORMAT <fmt>` with the data in the body, fed to the engine binary-safely through
  chdb's streaming-insert API (RowBinary, RowBinaryWithNamesAndTypes, Native, CSV, ...);
* `default_format` (the crate asks for RowBinary / RowBinaryWithNamesAndTypes), `database`,
  `param_<name>` query parameters; every other URL parameter is a ClickHouse setting and is
  applied to the engine session of that request (`insert_deduplication_token`,
  `output_format_*`, `max_threads`, ... ; unknown names fail with UNKNOWN_SETTING, as in
  ClickHouse);
* compression: `decompress=1` (request body in ClickHouse's native compressed blocks: CityHash128
  checksum + method byte + sizes + LZ4/ZSTD/none block), `compress=1` (response in the same
  blocks), HTTP `Content-Encoding` on the request and `Accept-Encoding` on the response
  (lz4 = LZ4 frame format, zstd, gzip, deflate) unless `enable_http_compression=0`;
* errors as ClickHouse reports them: a non-200 status, `X-ClickHouse-Exception-Code`, and the
  body `Code: N. DB::Exception: ... (NAME) (version X)`;
* `X-ClickHouse-Summary`, `-Query-Id`, `-Format`, `-Timezone` response headers; `/ping`;
  HTTP sessions (`session_id`, `session_timeout`, `session_check`, `close_session`);
  GET requests run with readonly=2, as in ClickHouse.

Concurrency: each request gets its own chdb connection (a ClickHouse session inside the one
embedded server, ~1 ms to open), so per-request settings, `USE` and temporary tables never leak
between requests, and chdb runs queries on different connections in parallel (it releases the
GIL). An "anchor" connection stays open for the server's lifetime so the embedded server and its
data directory stay loaded. Results are buffered before they are sent: errors are therefore
always reported with a proper status code, never in the middle of a 200 body.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import logging
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import chdb
import lz4.block
import lz4.frame
from clickhouse_cityhash.cityhash import CityHash128

try:  # optional: only needed for zstd (de)compression, which the crate uses only if asked to
    import zstandard
except ImportError:  # pragma: no cover
    zstandard = None

log = logging.getLogger("chdb-http")

# ClickHouse's default keep_alive_timeout; the crate's pool drops idle connections after 2 s.
KEEP_ALIVE_TIMEOUT = 30
DEFAULT_FORMAT = "TabSeparated"
MAX_BLOCK_DECOMPRESSED = 1 << 30  # refuse absurd native block sizes instead of allocating them

# URL parameters that are part of the HTTP protocol, not engine settings (ClickHouse's
# HTTPHandler has the same list). `param_*` are query parameters.
RESERVED_PARAMS = {
    "query", "database", "default_format", "compress", "decompress", "user", "password",
    "quota_key", "query_id", "stacktrace", "role", "buffer_size", "wait_end_of_query",
    "session_id", "session_timeout", "session_check", "close_session",
    "client_protocol_version",
}

# HTTP status for an exception, by ClickHouse error name (mirrors exceptionCodeToHTTPStatus).
_STATUS_BY_ERROR = {}
for _status, _names in {
    400: "CANNOT_PARSE_TEXT CANNOT_PARSE_ESCAPE_SEQUENCE CANNOT_PARSE_QUOTED_STRING "
         "CANNOT_PARSE_DATE CANNOT_PARSE_DATETIME CANNOT_PARSE_NUMBER CANNOT_PARSE_IPV4 "
         "CANNOT_PARSE_IPV6 CANNOT_PARSE_UUID CANNOT_PARSE_INPUT_ASSERTION_FAILED "
         "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING DUPLICATE_COLUMN ILLEGAL_COLUMN "
         "UNKNOWN_ELEMENT_IN_AST UNKNOWN_TYPE_OF_AST_NODE TOO_DEEP_AST TOO_BIG_AST "
         "UNEXPECTED_AST_STRUCTURE SYNTAX_ERROR INCORRECT_DATA TYPE_MISMATCH "
         "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE CANNOT_READ_ALL_DATA CHECKSUM_DOESNT_MATCH "
         "CANNOT_DECOMPRESS UNKNOWN_COMPRESSION_METHOD BAD_ARGUMENTS "
         "UNKNOWN_QUERY_PARAMETER BAD_QUERY_PARAMETER",
    403: "READONLY ACCESS_DENIED UNKNOWN_USER WRONG_PASSWORD REQUIRED_PASSWORD "
         "AUTHENTICATION_FAILED",
    404: "UNKNOWN_TABLE UNKNOWN_FUNCTION UNKNOWN_IDENTIFIER UNKNOWN_TYPE UNKNOWN_STORAGE "
         "UNKNOWN_DATABASE UNKNOWN_SETTING UNKNOWN_DIRECTION_OF_SORTING "
         "UNKNOWN_AGGREGATE_FUNCTION UNKNOWN_FORMAT UNKNOWN_DATABASE_ENGINE "
         "UNKNOWN_TYPE_OF_QUERY UNKNOWN_ROLE SESSION_NOT_FOUND",
    411: "HTTP_LENGTH_REQUIRED",
    413: "QUERY_IS_TOO_LARGE",
    423: "SESSION_IS_LOCKED",
    501: "NOT_IMPLEMENTED SUPPORT_IS_DISABLED",
}.items():
    for _name in _names.split():
        _STATUS_BY_ERROR[_name] = _status


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

class ClickHouseError(Exception):
    """An error to report the way ClickHouse does: `Code: N. DB::Exception: ... (NAME)`."""

    def __init__(self, code: int, name: str, text: str, close_connection: bool = False):
        super().__init__(text)
        self.code, self.name, self.text = code, name, text
        # True when the request stream can no longer be trusted (e.g. broken chunked body).
        self.close_connection = close_connection

    @classmethod
    def make(cls, code: int, name: str, message: str, **kw) -> "ClickHouseError":
        return cls(code, name, f"Code: {code}. DB::Exception: {message}. ({name})", **kw)

    @classmethod
    def from_exception(cls, exc: BaseException) -> "ClickHouseError":
        """Map a chdb exception (its text already is ClickHouse's) or any other failure."""
        if isinstance(exc, ClickHouseError):
            return exc
        text = str(exc)
        m = re.search(r"Code: (\d+)\. ", text)
        if m:
            # chdb may prefix the engine's text ("Streaming insert finish failed: Code: ...").
            text = text[m.start():].strip()
            names = re.findall(r"\(([A-Z][A-Z0-9_]+)\)", text)
            return cls(int(m.group(1)), names[-1] if names else "UNKNOWN_EXCEPTION", text)
        # Not from the engine: a bug or an unexpected condition in this front end.
        return cls.make(1001, "STD_EXCEPTION", f"{type(exc).__name__}: {text}")

    @property
    def http_status(self) -> int:
        return _STATUS_BY_ERROR.get(self.name, 500)


# ---------------------------------------------------------------------------------------------
# Compression
# ---------------------------------------------------------------------------------------------

# ClickHouse native compressed block ("compress=1"/"decompress=1"):
#   16 B CityHash128 (v1.0.2) of the rest | 1 B method | u32 LE size of header+data |
#   u32 LE decompressed size | data
METHOD_NONE, METHOD_LZ4, METHOD_ZSTD = 0x02, 0x82, 0x90
NATIVE_HEADER = struct.Struct("<BII")
NATIVE_BLOCK_SIZE = 1 << 20  # ClickHouse's max_compress_block_size


def native_checksum(block: bytes) -> bytes:
    # CityHash128 returns the (first, second) uint64 pair as one int, first in the high half;
    # ClickHouse writes `first` then `second`, each little-endian.
    h = CityHash128(block)
    return struct.pack("<QQ", h >> 64, h & 0xFFFFFFFFFFFFFFFF)


def decode_native_blocks(data: bytes) -> bytes:
    out, pos, n = [], 0, len(data)
    while pos < n:
        if n - pos < 16 + NATIVE_HEADER.size:
            raise ClickHouseError.make(
                271, "CANNOT_DECOMPRESS", f"Truncated compressed block header at offset {pos}")
        method, size_compressed, size_decompressed = NATIVE_HEADER.unpack_from(data, pos + 16)
        if size_compressed < NATIVE_HEADER.size or pos + 16 + size_compressed > n:
            raise ClickHouseError.make(
                271, "CANNOT_DECOMPRESS",
                f"Compressed block at offset {pos} claims {size_compressed} bytes, "
                f"{n - pos - 16} available")
        if size_decompressed > MAX_BLOCK_DECOMPRESSED:
            raise ClickHouseError.make(
                271, "CANNOT_DECOMPRESS", f"Too large size_decompressed: {size_decompressed}")
        block = data[pos + 16: pos + 16 + size_compressed]
        if native_checksum(block) != data[pos: pos + 16]:
            raise ClickHouseError.make(
                40, "CHECKSUM_DOESNT_MATCH",
                f"Checksum doesn't match: corrupted data. Compressed block at offset {pos}")
        payload = block[NATIVE_HEADER.size:]
        try:
            if method == METHOD_LZ4:
                chunk = lz4.block.decompress(payload, uncompressed_size=size_decompressed)
            elif method == METHOD_NONE:
                chunk = payload
            elif method == METHOD_ZSTD and zstandard is not None:
                chunk = zstandard.ZstdDecompressor().decompress(
                    payload, max_output_size=size_decompressed)
            else:
                raise ClickHouseError.make(
                    89, "UNKNOWN_COMPRESSION_METHOD", f"Unknown compression method: {method:#x}")
        except ClickHouseError:
            raise
        except Exception as exc:
            raise ClickHouseError.make(
                271, "CANNOT_DECOMPRESS", f"Cannot decompress block at offset {pos}: {exc}")
        if len(chunk) != size_decompressed:
            raise ClickHouseError.make(
                271, "CANNOT_DECOMPRESS",
                f"Block at offset {pos} decompressed to {len(chunk)} bytes, "
                f"header says {size_decompressed}")
        out.append(chunk)
        pos += 16 + size_compressed
    return b"".join(out)


def encode_native_blocks(data: bytes) -> bytes:
    out = []
    for off in range(0, len(data), NATIVE_BLOCK_SIZE):
        chunk = data[off: off + NATIVE_BLOCK_SIZE]
        compressed = lz4.block.compress(chunk, store_size=False)
        block = NATIVE_HEADER.pack(METHOD_LZ4, NATIVE_HEADER.size + len(compressed),
                                   len(chunk)) + compressed
        out.append(native_checksum(block))
        out.append(block)
    return b"".join(out)


def http_decode(data: bytes, encoding: str) -> bytes:
    """Undo the request's Content-Encoding."""
    enc = encoding.strip().lower()
    try:
        if enc in ("", "identity", "none"):
            return data
        if enc in ("gzip", "x-gzip"):
            return gzip.decompress(data)
        if enc == "deflate":
            return zlib.decompress(data)
        if enc == "lz4":
            return lz4.frame.decompress(data)
        if enc == "zstd" and zstandard is not None:
            return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    except Exception as exc:
        raise ClickHouseError.make(
            271, "CANNOT_DECOMPRESS", f"Cannot decode {enc} request body: {exc}")
    raise ClickHouseError.make(
        89, "UNKNOWN_COMPRESSION_METHOD", f"Unknown HTTP compression method: {encoding}")


HTTP_ENCODINGS = ("lz4", "zstd", "gzip", "deflate") if zstandard else ("lz4", "gzip", "deflate")


def choose_http_encoding(accept_encoding: str) -> str | None:
    """First encoding the client lists that we can produce (the crate sends just `lz4`)."""
    for token in accept_encoding.split(","):
        name, _, params = token.strip().partition(";")
        name = name.strip().lower()
        if name in HTTP_ENCODINGS and params.replace(" ", "") not in ("q=0", "q=0.0"):
            return name
    return None


def http_encode(data: bytes, encoding: str, level: int) -> bytes:
    if encoding == "lz4":
        return lz4.frame.compress(data)  # LZ4 frame format, which is what ClickHouse sends
    if encoding == "zstd":
        return zstandard.ZstdCompressor(level=max(level, 1)).compress(data)
    if encoding == "gzip":
        return gzip.compress(data, compresslevel=min(max(level, 1), 9))
    return zlib.compress(data, min(max(level, 1), 9))  # deflate = zlib stream, as ClickHouse


# ---------------------------------------------------------------------------------------------
# SQL scanning: just enough lexing to find where an INSERT's inline data starts
# ---------------------------------------------------------------------------------------------

_WORD = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
_FORMAT_NAME = re.compile(rb"[ \t\r\n]*([A-Za-z_][A-Za-z0-9_]*)")


def _top_level_words(buf: bytes):
    """Yield (UPPER_WORD, start, end) for the tokens outside comments and brackets that matter
    here: bare words, and quoted names/literals as (b"", start, end)."""
    i, n, depth = 0, len(buf), 0
    while i < n:
        c = buf[i]
        if c in b" \t\r\n\f\v;":
            i += 1
        elif buf.startswith(b"--", i):
            j = buf.find(b"\n", i)
            i = n if j < 0 else j + 1
        elif buf.startswith(b"/*", i):
            j = buf.find(b"*/", i + 2)
            i = n if j < 0 else j + 2
        elif c in b"'\"`":
            start = i
            i += 1
            while i < n and buf[i] != c:
                i += 2 if buf[i] == 0x5C else 1  # backslash escapes; '' is two literals
            i += 1
            if depth == 0:
                yield b"", start, i
        elif c in b"([{":
            depth += 1
            i += 1
        elif c in b")]}":
            depth -= 1
            i += 1
        else:
            m = _WORD.match(buf, i)
            if m is None:
                i += 1
                continue
            if depth == 0:
                yield m.group().upper(), m.start(), m.end()
            i = m.end()


def split_insert(buf: bytes):
    """For `INSERT ... FORMAT <fmt><data>` return (statement, fmt, data_offset), else None.

    `None` also for INSERT ... VALUES / SELECT / FROM INFILE: those are plain statements the
    engine parses itself. The data starts after the format name, after spaces and one newline
    (ClickHouse's ParserInsertQuery rule), so binary data that starts with whitespace survives.
    """
    words = _top_level_words(buf)
    first = next(words, None)
    if first is None or first[0] != b"INSERT":
        return None
    prev = b"INSERT"
    for word, start, end in words:
        # `INSERT INTO format ...`, `db.format`: a table called format, not the clause.
        if (word == b"FORMAT" and prev not in (b"INTO", b"TABLE", b"FUNCTION")
                and buf[start - 1] != 0x2E):
            m = _FORMAT_NAME.match(buf, end)
            if m is None:
                return None
            pos = m.end()
            while pos < len(buf) and buf[pos] in b" \t\f\v":
                pos += 1
            if buf.startswith(b"\r\n", pos):
                pos += 2
            elif buf.startswith(b"\n", pos):
                pos += 1
            # Undecodable bytes in a table name reach the engine as U+FFFD: an unknown table.
            return buf[:start].decode("utf-8", "replace"), m.group(1).decode(), pos
        if word in (b"VALUES", b"SELECT", b"WITH", b"INFILE"):
            return None
        prev = word
    return None


def output_format_of(sql: str, default: str) -> str:
    """The format the result will be in: a trailing `FORMAT x` clause wins over the default."""
    buf = sql.encode("utf-8", "replace")
    words = list(_top_level_words(buf))
    fmt = default
    for (word, _, _), (name, start, end) in zip(words, words[1:]):
        if word == b"FORMAT" and name:
            fmt = buf[start:end].decode()
    return fmt


def content_type_of(fmt: str) -> str:
    f = fmt.lower()
    if f.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if f.startswith("csv"):
        return "text/csv; charset=UTF-8; header=" + ("present" if "names" in f else "absent")
    if f.startswith("json") or f == "ndjson":
        return "application/json; charset=UTF-8"
    if f == "xml":
        return "application/xml; charset=UTF-8"
    if f.startswith(("rowbinary", "native", "parquet", "arrow", "orc", "avro", "protobuf",
                     "capnproto", "msgpack", "bson", "npy")):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


def quote_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ---------------------------------------------------------------------------------------------
# Engine: chdb connections and HTTP sessions
# ---------------------------------------------------------------------------------------------

class Session:
    def __init__(self, conn, timeout: float):
        self.conn = conn
        self.timeout = timeout
        self.last_used = time.monotonic()
        self.lock = threading.Lock()


class Engine:
    def __init__(self, data_path: str, max_concurrent: int, merge_nice: int):
        os.makedirs(data_path, exist_ok=True)
        self.path = data_path
        # Keeps the embedded server (one per process, bound to this path) loaded. Its server
        # settings come with this first connection: background merges run at a lower CPU
        # priority (ClickHouse's own `os_threads_nice_value_merge_mutate`), so on a small shared
        # box they take the idle CPU instead of delaying inserts and queries.
        self.anchor = chdb.connect(f"{data_path}?os_threads_nice_value_merge_mutate={merge_nice}")
        row = self.anchor.query("SELECT version(), timezone()", "TabSeparated").bytes()
        self.version, self.timezone = row.decode().strip().split("\t")
        self.sessions: dict[str, Session] = {}
        self.sessions_lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(max_concurrent) if max_concurrent > 0 else None

    def connect(self):
        return chdb.connect(self.path)

    # -- sessions (ClickHouse's `session_id`: settings, USE and temp tables persist) ----------

    def acquire_session(self, sid: str, timeout: float, check: bool) -> Session:
        with self.sessions_lock:
            session = self.sessions.get(sid)
            if session is None:
                if check:
                    raise ClickHouseError.make(
                        372, "SESSION_NOT_FOUND", f"Session {sid} not found")
                session = self.sessions[sid] = Session(self.connect(), timeout)
            if not session.lock.acquire(blocking=False):
                raise ClickHouseError.make(
                    373, "SESSION_IS_LOCKED", "Session is locked by a concurrent client")
            session.timeout = timeout
            return session

    def release_session(self, sid: str, session: Session, close: bool) -> None:
        session.last_used = time.monotonic()
        if close:
            with self.sessions_lock:
                if self.sessions.get(sid) is session:
                    del self.sessions[sid]
            session.conn.close()
        session.lock.release()

    def expire_sessions(self) -> None:
        now = time.monotonic()
        with self.sessions_lock:
            for sid, s in list(self.sessions.items()):
                if now - s.last_used > s.timeout and s.lock.acquire(blocking=False):
                    del self.sessions[sid]
                    s.conn.close()
                    s.lock.release()

    def close(self) -> None:
        with self.sessions_lock:
            for s in self.sessions.values():
                s.conn.close()
            self.sessions.clear()
        self.anchor.close()


class QueryRequest:
    """Everything a query request says, from URL parameters, headers and (multipart) body."""

    def __init__(self, method: str, url_params, headers, body: bytes):
        self.method = method
        self.query_parts: list[str] = []
        self.settings: dict[str, str] = {}
        self.params: dict[str, str] = {}
        self.database = headers.get("X-ClickHouse-Database") or None
        self.default_format = headers.get("X-ClickHouse-Format") or DEFAULT_FORMAT
        self.query_id = ""
        self.compress = self.decompress = False
        self.session_id = ""
        self.session_timeout = 60.0
        self.session_check = self.close_session = False

        fields = list(url_params)
        content_type = headers.get("Content-Type", "")
        if content_type.lower().startswith("multipart/form-data"):
            fields += parse_multipart(body, content_type)
            body = b""
        for name, value in fields:
            self._param(name, value)
        self.body = body

    def _param(self, name: str, value: str) -> None:
        if name == "query":
            if value:
                self.query_parts.append(value)
        elif name.startswith("param_"):
            self.params[name[len("param_"):]] = value
        elif name == "database":
            self.database = value or None
        elif name == "default_format":
            self.default_format = value or DEFAULT_FORMAT
        elif name in ("compress", "decompress", "session_check", "close_session"):
            setattr(self, name, value.strip().lower() in ("1", "true", "yes"))
        elif name == "query_id":
            self.query_id = value
        elif name == "session_id":
            self.session_id = value
        elif name == "session_timeout":
            try:
                self.session_timeout = min(max(float(value), 1.0), 3600.0)
            except ValueError:
                raise ClickHouseError.make(
                    36, "BAD_ARGUMENTS", f"Invalid session timeout: {value!r}") from None
        elif name in RESERVED_PARAMS:
            pass  # user/password/role/quota_key/buffer_size/wait_end_of_query: no-ops here
        else:
            if not _SETTING_NAME.match(name):
                raise ClickHouseError.make(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
            self.settings[name] = value

    def setting_flag(self, name: str, default: bool) -> bool:
        v = self.settings.get(name)
        return default if v is None else v.strip().lower() in ("1", "true", "yes", "on")

    def setting_int(self, name: str, default: int) -> int:
        try:
            return int(self.settings.get(name, default))
        except ValueError:
            return default


def parse_multipart(body: bytes, content_type: str) -> list[tuple[str, str]]:
    """Fields of a multipart/form-data body (the crate sends `query` and `param_*` like this)."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise ClickHouseError.make(36, "BAD_ARGUMENTS", "multipart/form-data without boundary")
    delimiter = b"\r\n--" + m.group(1).encode("latin-1")
    fields = []
    for part in (b"\r\n" + body).split(delimiter)[1:]:
        if part.startswith(b"--"):
            break  # closing delimiter
        head, sep, value = part.partition(b"\r\n\r\n")
        if not sep:
            raise ClickHouseError.make(36, "BAD_ARGUMENTS", "Malformed multipart/form-data body")
        name = re.search(rb'name="([^"]*)"', head)
        if name:
            fields.append((name.group(1).decode("utf-8", "replace"),
                           value.decode("utf-8", "replace")))
    return fields


# ---------------------------------------------------------------------------------------------
# Query execution
# ---------------------------------------------------------------------------------------------

class Result:
    def __init__(self, body: bytes, fmt: str, summary: dict):
        self.body, self.format, self.summary = body, fmt, summary


def execute(engine: Engine, req: QueryRequest) -> Result:
    # The query: URL `query` (+ newline) followed by the body, exactly as ClickHouse concatenates
    # them, so `query=INSERT INTO t FORMAT RowBinary` + binary body works, and so does a query
    # sent whole in the body.
    head = ("\n".join(req.query_parts) + "\n").encode() if req.query_parts else b""
    body = req.body
    if not head.strip() and not body.strip():
        raise ClickHouseError.make(62, "SYNTAX_ERROR", "Empty query")

    # Find an INSERT with inline data. Usually the statement is all in `head` and the data is
    # exactly the body, so try that first and avoid copying a large body.
    sql, data = "", b""
    insert = split_insert(head) if head else None
    if insert is not None and insert[2] >= len(head):
        data = body
    else:
        full = head + body
        insert = split_insert(full[:1 << 20])  # the statement itself is never that long
        if insert is not None:
            data = full[insert[2]:]
    if insert is None:
        try:
            sql = (head + body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ClickHouseError.make(
                36, "BAD_ARGUMENTS", f"Query is not valid UTF-8: {exc}") from None

    if engine.slots is not None:
        engine.slots.acquire()
    session = None
    try:
        if req.session_id:
            session = engine.acquire_session(req.session_id, req.session_timeout,
                                             req.session_check)
            conn = session.conn
        else:
            conn = engine.connect()
        try:
            restore = prepare_connection(conn, req, in_session=session is not None)
            try:
                if insert is not None:
                    return run_insert(conn, insert[0], insert[1], data)
                return run_query(conn, sql, req)
            finally:
                restore()
        finally:
            if session is not None:
                engine.release_session(req.session_id, session, req.close_session)
            else:
                conn.close()
    finally:
        if engine.slots is not None:
            engine.slots.release()


def prepare_connection(conn, req: QueryRequest, in_session: bool):
    """Apply `database` and settings; return a function that undoes them for a session."""
    settings = dict(req.settings)
    # ClickHouse: GET requests may only read (and change settings). Not done in a session,
    # where readonly=2 would forbid restoring `readonly` afterwards.
    if req.method == "GET" and not in_session and settings.get("readonly", "0") != "1":
        settings["readonly"] = "2"

    undo = []
    if in_session and settings:
        # Settings given with a request apply to that request only, not to the whole session.
        names = ", ".join(quote_literal(n) for n in settings)
        rows = conn.query(f"SELECT name, value FROM system.settings WHERE name IN ({names})",
                          "JSONEachRow").bytes()
        old = [json.loads(line) for line in rows.splitlines() if line.strip()]
        if old:
            undo.append("SET " + ", ".join(f"{o['name']} = {quote_literal(o['value'])}"
                                           for o in old))
    if req.database and in_session:
        current = conn.query("SELECT currentDatabase()", "TabSeparated").bytes().decode().strip()
        undo.append(f"USE {quote_identifier(current)}")

    if req.database and (in_session or req.database != "default"):
        conn.query(f"USE {quote_identifier(req.database)}", "TabSeparated")
    if settings:
        # Values go in as strings; ClickHouse parses them into each setting's type, like it
        # does for HTTP URL parameters. Unknown names fail with UNKNOWN_SETTING.
        conn.query("SET " + ", ".join(f"{n} = {quote_literal(v)}" for n, v in settings.items()),
                   "TabSeparated")

    def restore():
        for stmt in undo:
            try:
                conn.query(stmt, "TabSeparated")
            except Exception as exc:  # e.g. the request made the session readonly
                log.warning("could not restore session state (%s): %s", stmt, exc)
    return restore


def run_insert(conn, statement: str, fmt: str, data: bytes) -> Result:
    started = time.monotonic()
    inserter = conn.send_insert(statement, fmt)
    try:
        view = memoryview(data)
        for off in range(0, len(data), 4 << 20):  # bounded chunks: bounded extra copies
            inserter.append(view[off: off + (4 << 20)])
        res = inserter.finish()
    except BaseException:
        try:
            inserter.cancel()
        except Exception:
            pass
        raise
    summary = {"read_rows": res.rows_written, "read_bytes": len(data),
               "written_rows": res.rows_written, "written_bytes": res.bytes_written,
               "total_rows_to_read": 0, "result_rows": res.rows_written,
               "result_bytes": res.bytes_written,
               "elapsed_ns": int((time.monotonic() - started) * 1e9)}
    return Result(b"", fmt, summary)


def run_query(conn, sql: str, req: QueryRequest) -> Result:
    res = conn.query(sql, req.default_format, params=req.params)
    body = res.bytes()
    summary = {"read_rows": res.rows_read(), "read_bytes": res.bytes_read(),
               "written_rows": res.rows_written(), "written_bytes": res.bytes_written(),
               "total_rows_to_read": res.rows_read(),  # result_rows: chdb does not say
               "result_bytes": len(body), "elapsed_ns": int(res.elapsed() * 1e9)}
    return Result(body, output_format_of(sql, req.default_format), summary)


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------

class ProtocolError(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the crate pools connections
    server_version = f"chdb-http/{chdb.__version__}"
    # Socket timeout: idle keep-alive connections are closed after this, and a request body
    # that stalls this long fails (ClickHouse's keep_alive_timeout/http_receive_timeout: 30 s).
    timeout = KEEP_ALIVE_TIMEOUT
    # http.server's own error pages (unparsable request line, unsupported method): plain text.
    error_content_type = "text/plain; charset=UTF-8"
    error_message_format = "HTTP %(code)d: %(message)s\n"
    engine: Engine  # set in main()
    verbose = False

    def version_string(self):
        return self.server_version

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle + delayed ACK adds
        # ~40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):
        self.handle_request()

    def do_POST(self):
        self.handle_request()

    def handle_request(self):
        started = time.monotonic()
        query_id = ""
        try:
            body = self.read_body()
            split = urlsplit(self.path)
            url_params = parse_qsl(split.query, keep_blank_values=True)
            if split.path in ("/ping", "/replicas_status") or (
                    self.command == "GET" and not any(k == "query" for k, _ in url_params)):
                self.send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
                return
            body = http_decode(body, self.headers.get("Content-Encoding", ""))
            req = QueryRequest(self.command, url_params, self.headers, body)
            query_id = req.query_id or str(uuid.uuid4())
            if req.decompress and not self.headers.get("Content-Type", "").lower().startswith(
                    "multipart/"):
                req.body = decode_native_blocks(req.body)
            result = execute(self.engine, req)
            self.send_result(req, result, query_id)
            status = 200
        except Exception as exc:
            err = ClickHouseError.from_exception(exc)
            if err.name == "STD_EXCEPTION" or err.http_status >= 500:
                log.error("%s %s -> %s", self.command, self.path[:200], err.text,
                          exc_info=err.name == "STD_EXCEPTION")
            self.send_error_response(err, query_id)
            status = err.http_status
        if self.verbose:
            log.info("%s %s %d %.1fms", self.command, self.path[:200], status,
                     (time.monotonic() - started) * 1e3)

    def read_body(self) -> bytes:
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self.read_chunked()
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError("negative Content-Length")
            data = self.rfile.read(length)
            if len(data) != length:
                raise ProtocolError(f"body ended after {len(data)} of {length} bytes")
            return data
        except (ProtocolError, ValueError, OSError) as exc:
            # The rest of the stream cannot be parsed: answer, then drop the connection. A
            # client that aborts an INSERT mid-body lands here too, and nothing is inserted.
            raise ClickHouseError.make(
                33, "CANNOT_READ_ALL_DATA", f"Cannot read request body: {exc}",
                close_connection=True) from None

    def read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            line = self.rfile.readline(65537)
            if not line.endswith(b"\n"):
                raise ProtocolError("truncated chunk header")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers: ignored
                return bytes(out)
            chunk = self.rfile.read(size)
            if len(chunk) != size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise ProtocolError("truncated chunk")
            out += chunk

    def common_headers(self, query_id: str) -> dict:
        headers = {"X-ClickHouse-Server-Display-Name": socket.gethostname(),
                   "X-ClickHouse-Timezone": self.engine.timezone,
                   "Keep-Alive": f"timeout={KEEP_ALIVE_TIMEOUT}"}
        if query_id:
            headers["X-ClickHouse-Query-Id"] = query_id
        return headers

    def send_result(self, req: QueryRequest, result: Result, query_id: str) -> None:
        body = result.body
        headers = self.common_headers(query_id)
        headers["X-ClickHouse-Format"] = result.format
        headers["Content-Type"] = content_type_of(result.format)
        headers["X-ClickHouse-Summary"] = json.dumps(
            {k: str(v) for k, v in result.summary.items()}, separators=(",", ":"))
        if req.compress:
            body = encode_native_blocks(body)
        encoding = choose_http_encoding(self.headers.get("Accept-Encoding", ""))
        if encoding and req.setting_flag("enable_http_compression", True):
            body = http_encode(body, encoding, req.setting_int("http_zlib_compression_level", 3))
            headers["Content-Encoding"] = encoding
        self.send(200, body, headers)

    def send_error_response(self, err: ClickHouseError, query_id: str) -> None:
        text = err.text
        if "(version " not in text:
            text += f" (version {self.engine.version})"
        headers = self.common_headers(query_id)
        headers["X-ClickHouse-Exception-Code"] = str(err.code)
        headers["Content-Type"] = "text/plain; charset=UTF-8"
        if err.close_connection:
            headers["Connection"] = "close"
            self.close_connection = True
        self.send(err.http_status, (text + "\n").encode("utf-8", "replace"), headers)

    def send(self, status: int, body: bytes, headers: dict) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, fmt, *args):  # http.server's own access/error lines
        if self.verbose:
            log.info("%s - %s", self.address_string(), fmt % args)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8123)
    ap.add_argument("--data", required=True, help="chdb data directory (persistent)")
    ap.add_argument("--max-concurrent-queries", type=int, default=32,
                    help="engine calls running at once (0 = unlimited, 1 = serialize)")
    ap.add_argument("--merge-nice", type=int, default=19,
                    help="Linux nice value of the merge threads (-20..19; 0 = as the queries)")
    ap.add_argument("--verbose", action="store_true", help="log every request")
    args = ap.parse_args()

    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = Engine(os.path.abspath(args.data), args.max_concurrent_queries, args.merge_nice)
    Handler.engine = engine
    Handler.verbose = args.verbose
    server = Server((args.host, args.port), Handler)

    def stop(signum, _frame):
        log.info("signal %d: shutting down", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def expire_loop():
        while True:
            time.sleep(5)
            engine.expire_sessions()

    threading.Thread(target=expire_loop, daemon=True).start()
    log.info("chdb-core %s (ClickHouse %s) on http://%s:%d, data %s", chdb.__version__,
             engine.version, args.host, args.port, engine.path)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        engine.close()
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
