#!/usr/bin/env python3
"""ClickHouse HTTP interface in front of chdb-core (ClickHouse's in-process engine).

The dev rig has no Docker and no way to download a ClickHouse server binary, but PyPI ships
chdb-core: the real ClickHouse engine as a Python extension. This file puts in front of it the
part of ClickHouse's HTTP protocol (port 8123) that the rig's clients use, and nothing more. The
clients are sluice through the Rust `clickhouse` crate (0.15, default features: LZ4, no zstd)
and the rig's shell scripts (curl); what each of them sends is listed with the feature:

* `GET /ping` answers `Ok.` (the rig's health check);
* the query in the POST body (the crate's queries, curl `--data-binary`) and/or in the `query`
  URL parameter (the crate's inserts), joined by a newline as ClickHouse joins them;
* `INSERT ... FORMAT <fmt>` with the data in the body (the crate: RowBinary or
  RowBinaryWithNamesAndTypes, sent with chunked transfer encoding), fed to the engine
  binary-safely through chdb's streaming-insert API;
* URL parameters `default_format` (the crate: RowBinary, RowBinaryWithNamesAndTypes, or the
  format `sluice clickhouse query` asks for) and `database`; `wait_end_of_query` is accepted and
  has nothing to do (results are always buffered, see below); every other URL parameter is a
  ClickHouse setting applied to the request's engine session (`insert_deduplication_token`,
  `deduplicate_blocks_in_dependent_materialized_views`, `insert_distributed_sync`, the crate's own
  `describe_include_subcolumns`); an unknown name fails with UNKNOWN_SETTING, as in ClickHouse;
* compression as the crate does it: `decompress=1` with an insert whose body is in ClickHouse's
  native compressed blocks (CityHash128 checksum + method byte + sizes + LZ4 block; a wrong
  checksum is refused), and `Accept-Encoding: lz4` on a query, answered with the result as an
  LZ4 frame (`Content-Encoding: lz4`). A request body with any other `Content-Encoding` is
  refused;
* errors as ClickHouse reports them: a non-200 status (by error name, as ClickHouse maps them),
  `X-ClickHouse-Exception-Code`, and the body `Code: N. DB::Exception: ... (NAME) (version X)`;
* a GET with a query runs with readonly=2, as in ClickHouse (for hand-poking from a browser).

Left out because no client uses them: HTTP sessions, query parameters (`param_*`, multipart form
bodies: sluice binds values with the crate's `.bind()`, which substitutes them client-side),
`compress=1` responses, zstd, gzip and deflate, `query_id`, the `X-ClickHouse-Database`/`-Format`
request headers, and informational response headers (`X-ClickHouse-Summary`, `-Query-Id`, ...).
There are no users: the crate's `X-ClickHouse-User`/`-Key` headers are ignored.

Concurrency: each request gets its own chdb connection (a ClickHouse session inside the one
embedded server, ~1 ms to open), so per-request settings and `USE` never leak between requests,
and chdb runs queries on different connections in parallel (it releases the GIL). An "anchor"
connection stays open for the server's lifetime so the embedded server and its data directory
stay loaded. Results are buffered before they are sent: errors are therefore always reported
with a proper status code, never in the middle of a 200 body.

Tests: dev/clickhouse/test_server.py (run by dev/test).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import chdb
import lz4.block
import lz4.frame
from clickhouse_cityhash.cityhash import CityHash128

log = logging.getLogger("chdb-http")

# ClickHouse's default keep_alive_timeout; the crate's pool drops idle connections after 2 s.
KEEP_ALIVE_TIMEOUT = 30
DEFAULT_FORMAT = "TabSeparated"
MAX_BLOCK_DECOMPRESSED = 1 << 30  # refuse absurd native block sizes instead of allocating them

# URL parameters that are part of the HTTP protocol, not engine settings.
RESERVED_PARAMS = {"query", "database", "default_format", "decompress", "wait_end_of_query"}

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
         "CANNOT_DECOMPRESS UNKNOWN_COMPRESSION_METHOD BAD_ARGUMENTS",
    403: "READONLY ACCESS_DENIED UNKNOWN_USER WRONG_PASSWORD REQUIRED_PASSWORD "
         "AUTHENTICATION_FAILED",
    404: "UNKNOWN_TABLE UNKNOWN_FUNCTION UNKNOWN_IDENTIFIER UNKNOWN_TYPE UNKNOWN_STORAGE "
         "UNKNOWN_DATABASE UNKNOWN_SETTING UNKNOWN_DIRECTION_OF_SORTING "
         "UNKNOWN_AGGREGATE_FUNCTION UNKNOWN_FORMAT UNKNOWN_DATABASE_ENGINE "
         "UNKNOWN_TYPE_OF_QUERY UNKNOWN_ROLE",
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

# ClickHouse native compressed block (`decompress=1`), the only method the crate sends is LZ4:
#   16 B CityHash128 (v1.0.2) of the rest | 1 B method | u32 LE size of header+data |
#   u32 LE decompressed size | data
METHOD_LZ4 = 0x82
NATIVE_HEADER = struct.Struct("<BII")


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
        if method != METHOD_LZ4:
            raise ClickHouseError.make(
                89, "UNKNOWN_COMPRESSION_METHOD", f"Unknown compression method: {method:#x}")
        try:
            chunk = lz4.block.decompress(block[NATIVE_HEADER.size:],
                                         uncompressed_size=size_decompressed)
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


def accepts_lz4(accept_encoding: str) -> bool:
    """True when the client accepts an LZ4 frame response (the crate sends `lz4`)."""
    for token in accept_encoding.split(","):
        name, _, params = token.strip().partition(";")
        if name.strip().lower() == "lz4" and params.replace(" ", "") not in ("q=0", "q=0.0"):
            return True
    return False


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


def quote_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ---------------------------------------------------------------------------------------------
# Engine: chdb connections
# ---------------------------------------------------------------------------------------------

class Engine:
    def __init__(self, data_path: str, max_concurrent: int, merge_nice: int):
        os.makedirs(data_path, exist_ok=True)
        self.path = data_path
        # Keeps the embedded server (one per process, bound to this path) loaded. Its server
        # settings come with this first connection: background merges run at a lower CPU
        # priority (ClickHouse's own `os_threads_nice_value_merge_mutate`), so on a small shared
        # box they take the idle CPU instead of delaying inserts and queries.
        self.anchor = chdb.connect(f"{data_path}?os_threads_nice_value_merge_mutate={merge_nice}")
        row = self.anchor.query("SELECT version()", "TabSeparated").bytes()
        self.version = row.decode().strip()
        self.slots = threading.BoundedSemaphore(max_concurrent) if max_concurrent > 0 else None

    def connect(self):
        return chdb.connect(self.path)

    def close(self) -> None:
        self.anchor.close()


class QueryRequest:
    """Everything a query request says, from its URL parameters and body."""

    def __init__(self, method: str, url_params, body: bytes):
        self.method = method
        self.query_parts: list[str] = []
        self.settings: dict[str, str] = {}
        self.database = None
        self.default_format = DEFAULT_FORMAT
        self.decompress = False
        self.body = body
        for name, value in url_params:
            if name == "query":
                if value:
                    self.query_parts.append(value)
            elif name == "database":
                self.database = value or None
            elif name == "default_format":
                self.default_format = value or DEFAULT_FORMAT
            elif name == "decompress":
                self.decompress = value.strip().lower() in ("1", "true", "yes")
            elif name in RESERVED_PARAMS:
                pass  # wait_end_of_query: results are always buffered
            elif not _SETTING_NAME.match(name):
                raise ClickHouseError.make(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
            else:
                self.settings[name] = value


# ---------------------------------------------------------------------------------------------
# Query execution
# ---------------------------------------------------------------------------------------------

def execute(engine: Engine, req: QueryRequest) -> bytes:
    """Run the request's statement; the result body (empty for an insert)."""
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
    try:
        conn = engine.connect()
        try:
            prepare_connection(conn, req)
            if insert is not None:
                run_insert(conn, insert[0], insert[1], data)
                return b""
            return conn.query(sql, req.default_format).bytes()
        finally:
            conn.close()
    finally:
        if engine.slots is not None:
            engine.slots.release()


def prepare_connection(conn, req: QueryRequest) -> None:
    """Apply the request's `database` and settings to its own connection."""
    settings = dict(req.settings)
    # ClickHouse: GET requests may only read (and change settings).
    if req.method == "GET" and settings.get("readonly", "0") != "1":
        settings["readonly"] = "2"
    if req.database and req.database != "default":
        conn.query(f"USE {quote_identifier(req.database)}", "TabSeparated")
    if settings:
        # Values go in as strings; ClickHouse parses them into each setting's type, like it
        # does for HTTP URL parameters. Unknown names fail with UNKNOWN_SETTING.
        conn.query("SET " + ", ".join(f"{n} = {quote_literal(v)}" for n, v in settings.items()),
                   "TabSeparated")


def run_insert(conn, statement: str, fmt: str, data: bytes) -> None:
    inserter = conn.send_insert(statement, fmt)
    try:
        view = memoryview(data)
        for off in range(0, len(data), 4 << 20):  # bounded chunks: bounded extra copies
            inserter.append(view[off: off + (4 << 20)])
        inserter.finish()
    except BaseException:
        try:
            inserter.cancel()
        except Exception:
            pass
        raise


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
        try:
            body = self.read_body()
            split = urlsplit(self.path)
            if split.path == "/ping":
                self.send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
                return
            encoding = self.headers.get("Content-Encoding", "").strip().lower()
            if encoding not in ("", "identity"):
                raise ClickHouseError.make(
                    89, "UNKNOWN_COMPRESSION_METHOD",
                    f"Unknown HTTP compression method: {encoding}")
            req = QueryRequest(self.command, parse_qsl(split.query, keep_blank_values=True), body)
            if req.decompress:
                req.body = decode_native_blocks(req.body)
            result = execute(self.engine, req)
            headers = {}
            if accepts_lz4(self.headers.get("Accept-Encoding", "")):
                result = lz4.frame.compress(result)  # the LZ4 frame format, as ClickHouse sends
                headers["Content-Encoding"] = "lz4"
            self.send(200, result, headers)
            status = 200
        except Exception as exc:
            err = ClickHouseError.from_exception(exc)
            if err.name == "STD_EXCEPTION" or err.http_status >= 500:
                log.error("%s %s -> %s", self.command, self.path[:200], err.text,
                          exc_info=err.name == "STD_EXCEPTION")
            self.send_error_response(err)
            status = err.http_status
        if self.verbose:
            log.info("%s %s %d %.1fms", self.command, self.path[:200], status,
                     (time.monotonic() - started) * 1e3)

    def read_body(self) -> bytes:
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self.read_chunked()  # the crate's inserts
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

    def send_error_response(self, err: ClickHouseError) -> None:
        text = err.text
        if "(version " not in text:
            text += f" (version {self.engine.version})"
        headers = {"X-ClickHouse-Exception-Code": str(err.code),
                   "Content-Type": "text/plain; charset=UTF-8"}
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
