"""Tests of the rig's ClickHouse front (server.py), over plain HTTP, one behaviour each.

Each request below is shaped the way a client of the rig sends it: the Rust `clickhouse` crate
0.15 as sluice uses it (queries in the POST body with `default_format`/`database`/settings in the
URL and `Accept-Encoding: lz4`; inserts as `query=INSERT ... FORMAT RowBinary` + `decompress=1`
with a chunked body of LZ4 native blocks) and the rig's curl calls (`/ping`, SQL in the body).

Run with the rig's venv (dev/test does):
    .dev/clickhouse/venv/bin/python -m pytest -q -p no:cacheprovider dev/clickhouse/test_server.py
The session starts its own server.py on a free port with a temporary data directory; it never
touches the rig's running ClickHouse.
"""

from __future__ import annotations

import http.client
import os
import socket
import struct
import subprocess
import sys
import time
from urllib.parse import urlencode

import lz4.block
import lz4.frame
import pytest
from clickhouse_cityhash.cityhash import CityHash128

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "server.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Front:
    def __init__(self, port: int):
        self.port = port

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, body=b"", params=None, method="POST", path="/", headers=None, conn=None):
        """(status, headers, body) of one request; `params` become the URL query string."""
        url = path + ("?" + urlencode(params) if params else "")
        own = conn is None
        conn = conn or self.connection()
        try:
            if isinstance(body, str):
                body = body.encode()
            chunked = not isinstance(body, (bytes, bytearray))  # an iterable: chunked encoding
            conn.request(method, url, body=body if body or chunked else None,
                         headers=headers or {}, encode_chunked=chunked)
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            if own:
                conn.close()

    def ok(self, sql, **params) -> bytes:
        status, _, body = self.request(sql, params)
        assert status == 200, body
        return body


@pytest.fixture(scope="session")
def ch(tmp_path_factory):
    port = _free_port()
    data = tmp_path_factory.mktemp("chdb-data")
    log = open(tmp_path_factory.mktemp("log") / "server.log", "w+b")
    proc = subprocess.Popen(
        [sys.executable, SERVER, "--host", "127.0.0.1", "--port", str(port), "--data", str(data),
         "--max-concurrent-queries", "4"],
        stdout=log, stderr=subprocess.STDOUT)
    front = Front(port)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"server.py exited with {proc.returncode}:\n{log.read().decode()}")
            try:
                if front.request(method="GET", path="/ping")[2] == b"Ok.\n":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("server.py did not answer /ping within 60 s")
            time.sleep(0.1)
        yield front
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def native_block(data: bytes) -> bytes:
    """One ClickHouse native compressed block (LZ4), as the crate builds it for `decompress=1`."""
    compressed = lz4.block.compress(data, store_size=False)
    block = struct.pack("<BII", 0x82, 9 + len(compressed), len(data)) + compressed
    h = CityHash128(block)
    return struct.pack("<QQ", h >> 64, h & 0xFFFFFFFFFFFFFFFF) + block


def row_binary(rows) -> bytes:
    """RowBinary of (UInt32, String) rows."""
    out = b""
    for n, s in rows:
        raw = s.encode()
        out += struct.pack("<I", n) + bytes([len(raw)]) + raw  # len < 128: one-byte varint
    return out


def assert_clickhouse_error(resp, status: int, code: int, name: str):
    got_status, headers, body = resp
    text = body.decode()
    assert got_status == status, text
    assert headers["X-ClickHouse-Exception-Code"] == str(code), text
    assert text.startswith(f"Code: {code}. DB::Exception: "), text
    assert f"({name})" in text and "(version " in text, text


# -- the rig's curl calls ---------------------------------------------------------------------

def test_ping(ch):
    status, _, body = ch.request(method="GET", path="/ping")
    assert (status, body) == (200, b"Ok.\n")


def test_query_in_body(ch):
    assert ch.ok("SELECT 1") == b"1\n"


def test_query_in_url_and_body_joined_by_newline(ch):
    # ClickHouse runs `query` + "\n" + body.
    assert ch.ok("1 + 1", query="SELECT") == b"2\n"


def test_insert_with_its_data_in_the_body(ch):
    ch.ok("CREATE TABLE body_insert (n UInt32, s String) ENGINE = Memory")
    ch.ok("INSERT INTO body_insert FORMAT CSV\n1,a\n2,b\n")
    assert ch.ok("SELECT n, s FROM body_insert ORDER BY n") == b"1\ta\n2\tb\n"


def test_empty_query_is_an_error(ch):
    assert_clickhouse_error(ch.request(b""), 400, 62, "SYNTAX_ERROR")


# -- the crate's queries ----------------------------------------------------------------------

def test_default_format_row_binary(ch):
    assert ch.ok("SELECT toUInt32(7)", default_format="RowBinary") == b"\x07\x00\x00\x00"


def test_default_format_row_binary_with_names_and_types(ch):
    body = ch.ok("SELECT toUInt8(5) AS x", default_format="RowBinaryWithNamesAndTypes")
    assert body == b"\x01\x01x\x05UInt8\x05"


def test_database_parameter(ch):
    ch.ok("CREATE DATABASE IF NOT EXISTS other")
    assert ch.ok("SELECT currentDatabase()", database="other") == b"other\n"
    assert ch.ok("SELECT currentDatabase()") == b"default\n"


def test_settings_apply_to_their_request_only(ch):
    assert ch.ok("SELECT getSetting('max_threads')", max_threads="3") == b"3\n"
    assert ch.ok("SELECT getSetting('max_threads')") != b"3\n"


def test_unknown_setting_fails_the_clickhouse_way(ch):
    resp = ch.request("SELECT 1", {"no_such_setting_here": "1"})
    assert_clickhouse_error(resp, 404, 115, "UNKNOWN_SETTING")
    resp = ch.request("SELECT 1", {"bad-name": "1"})
    assert_clickhouse_error(resp, 404, 115, "UNKNOWN_SETTING")


def test_wait_end_of_query_is_accepted(ch):
    assert ch.ok("SELECT 1", wait_end_of_query="1") == b"1\n"


def test_lz4_response_when_accepted(ch):
    status, headers, body = ch.request("SELECT number FROM numbers(1000)",
                                       {"default_format": "RowBinary"},
                                       headers={"Accept-Encoding": "lz4"})
    assert status == 200 and headers["Content-Encoding"] == "lz4"
    assert lz4.frame.decompress(body) == b"".join(struct.pack("<Q", i) for i in range(1000))


def test_plain_response_otherwise(ch):
    status, headers, body = ch.request("SELECT 1")
    assert status == 200 and "Content-Encoding" not in headers and body == b"1\n"


def test_error_is_never_inside_a_200_body(ch):
    # Rows come before the failing one; the front buffers, so the status still says error.
    sql = "SELECT throwIf(number = 3) FROM numbers(10) SETTINGS max_block_size = 1"
    status, headers, body = ch.request(sql, headers={"Accept-Encoding": "lz4"})
    assert status == 500 and headers["X-ClickHouse-Exception-Code"] == "395", body
    assert body.startswith(b"Code: 395. DB::Exception: ") and b"0\n1\n" not in body
    assert_clickhouse_error(ch.request("SELEC 1"), 400, 62, "SYNTAX_ERROR")
    assert_clickhouse_error(ch.request("SELECT * FROM no_such_table"), 404, 60, "UNKNOWN_TABLE")


# -- the crate's inserts ----------------------------------------------------------------------

ROWS = [(0x0A0A0A0A, "\n leading newline"), (2, "b"), (3, "")]


@pytest.fixture()
def table(ch, request):
    name = request.node.name
    ch.ok(f"CREATE TABLE {name} (n UInt32, s String) ENGINE = MergeTree ORDER BY n "
          "SETTINGS non_replicated_deduplication_window = 100")
    yield name
    ch.ok(f"DROP TABLE {name}")


def rows_of(ch, table) -> bytes:
    return ch.ok(f"SELECT n, s FROM {table} ORDER BY n", default_format="RowBinary")


def test_insert_row_binary_query_in_url(ch, table):
    # Binary data that starts with a newline byte survives the query/body split.
    ch.ok(row_binary(ROWS), query=f"INSERT INTO {table} (n, s) FORMAT RowBinary")
    assert rows_of(ch, table) == row_binary(sorted(ROWS))


def test_insert_native_lz4_blocks_chunked_like_the_crate(ch, table):
    data = row_binary(ROWS)
    blocks = [native_block(data[:7]), native_block(data[7:])]  # two blocks, one split mid-row
    params = {"database": "default", "query": f"INSERT INTO {table} (n, s) FORMAT RowBinary",
              "decompress": "1"}
    conn = ch.connection()  # one pooled keep-alive connection for both requests
    try:
        status, _, body = ch.request(iter(blocks), params, conn=conn)
        assert status == 200, body
        status, _, body = ch.request(f"SELECT count() FROM {table}", conn=conn)
        assert (status, body) == (200, b"3\n")
    finally:
        conn.close()
    assert rows_of(ch, table) == row_binary(sorted(ROWS))


def test_insert_row_binary_with_names_and_types(ch, table):
    # The crate's format for inserts with row-type validation: a header of names and types first.
    header = b"\x02" + b"\x01n" + b"\x01s" + b"\x06UInt32" + b"\x06String"
    ch.ok(native_block(header + row_binary(ROWS)), decompress="1",
          query=f"INSERT INTO {table} (n, s) FORMAT RowBinaryWithNamesAndTypes")
    assert rows_of(ch, table) == row_binary(sorted(ROWS))


def test_corrupted_checksum_is_refused(ch, table):
    block = bytearray(native_block(row_binary(ROWS)))
    block[0] ^= 0xFF
    resp = ch.request(bytes(block), {"query": f"INSERT INTO {table} FORMAT RowBinary",
                                     "decompress": "1"})
    assert_clickhouse_error(resp, 400, 40, "CHECKSUM_DOESNT_MATCH")
    assert ch.ok(f"SELECT count() FROM {table}") == b"0\n"


def test_zstd_blocks_and_a_gzip_body_are_read_and_an_unknown_method_is_refused(ch, table):
    # Outside clients (clickhouse-connect, a crate built with zstd) compress otherwise than sluice.
    import gzip
    import zstandard
    payload = row_binary(ROWS)
    body = bytes([0x90]) + struct.pack("<II", 9 + len(z := zstandard.ZstdCompressor().compress(payload)), len(payload)) + z
    h = CityHash128(body)
    block = struct.pack("<QQ", h >> 64, h & 0xFFFFFFFFFFFFFFFF) + body
    ch.ok(block, query=f"INSERT INTO {table} FORMAT RowBinary", decompress="1")
    assert ch.ok(f"SELECT count() FROM {table}") == str(len(ROWS)).encode() + b"\n"
    resp = ch.request(gzip.compress(b"SELECT 41 + 1"), headers={"Content-Encoding": "gzip"})
    assert resp[0] == 200 and resp[2] == b"42\n", resp
    unknown = bytearray(native_block(payload))
    unknown[16] = 0x99
    h = CityHash128(bytes(unknown[16:]))
    unknown[:16] = struct.pack("<QQ", h >> 64, h & 0xFFFFFFFFFFFFFFFF)
    resp = ch.request(bytes(unknown), {"query": f"INSERT INTO {table} FORMAT RowBinary", "decompress": "1"})
    assert resp[0] != 200 and resp[2].startswith(b"Code: "), resp


def test_a_session_keeps_its_state_across_requests(ch):
    # clickhouse-connect opens an HTTP session by default.
    session = {"session_id": "test-session-1"}
    ch.ok("CREATE TEMPORARY TABLE t_session (x UInt8)", **session)
    ch.ok("INSERT INTO t_session VALUES (7)", **session)
    assert ch.ok("SELECT x FROM t_session", **session) == b"7\n"
    resp = ch.request("SELECT x FROM t_session")
    assert resp[0] != 200, "a temporary table stays in its session"


def test_insert_deduplication_token_reaches_the_insert(ch, table):
    query = f"INSERT INTO {table} FORMAT RowBinary"
    token = {"insert_deduplication_token": "batch-1"}
    ch.ok(native_block(row_binary(ROWS[:1])), query=query, decompress="1", **token)
    # Other rows, same token: a re-delivery of the same batch, dropped.
    ch.ok(native_block(row_binary(ROWS[1:])), query=query, decompress="1", **token)
    assert ch.ok(f"SELECT count() FROM {table}") == b"1\n"


def test_bad_insert_data_fails(ch, table):
    resp = ch.request(b"\x01\x02", {"query": f"INSERT INTO {table} FORMAT RowBinary"})
    assert resp[0] != 200 and resp[2].startswith(b"Code: "), resp
    assert ch.ok(f"SELECT count() FROM {table}") == b"0\n"


# -- GET --------------------------------------------------------------------------------------

def test_get_is_readonly(ch):
    assert ch.request(method="GET", params={"query": "SELECT 1"})[2] == b"1\n"
    resp = ch.request(method="GET", params={"query": "CREATE TABLE get_made (x UInt8) "
                                                     "ENGINE = Memory"})
    assert_clickhouse_error(resp, 403, 164, "READONLY")
    assert ch.ok("EXISTS TABLE get_made") == b"0\n"
