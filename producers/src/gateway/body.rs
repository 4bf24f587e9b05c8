//! From the request body to JSON: content type, content coding, size limit, strict parse.
//!
//! The body is read here rather than by axum's `Json` extractor so every refusal has the
//! gateway's JSON shape:
//! - 415 `unsupported_media_type` for another content type than JSON;
//! - 415 `unsupported_content_encoding` for a `Content-Encoding` other than `gzip` (`x-gzip`),
//!   `deflate` (zlib, as HTTP defines it) or `identity`, or more than one coding: the answer
//!   lists the accepted ones (`allowed`);
//! - 413 `payload_too_large` past the route's limit, which bounds the body as sent (checked on
//!   `Content-Length` first, so an announced oversized body is refused before a byte of it is
//!   read) *and* the body once decompressed: inflating stops one byte past the limit, so a
//!   "zip bomb" costs at most the limit in memory and time;
//! - 408 `request_timeout` for a client that sends too slowly;
//! - 400 `malformed_encoding` for a compressed body that does not decompress (corrupt, truncated,
//!   bytes after the compressed stream);
//! - 400 `malformed_json` for malformed JSON, with its line and column, and 400 `duplicate_key`
//!   for an object that repeats a key (`field`: its path), through
//!   [`sluice_core::json::from_slice_strict`].
//!
//! Reading is async (the body arrives over the network); decoding and parsing is the pure
//! [`decode`], run on the blocking pool for large or compressed bodies: a 10 MiB batch takes
//! tens of milliseconds, which would otherwise stall every request sharing the async worker.

use std::io::Read;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use flate2::bufread::{MultiGzDecoder, ZlibDecoder};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value as Json;
use sluice_core::json::{StrictJsonError, from_slice_strict};

use super::error::ApiError;

/// Bodies at least this large (as sent) are decoded off the async workers; compressed ones
/// always are.
const PARSE_OFF_THREAD_BYTES: usize = 256 * 1024;

/// The content codings accepted, as `Content-Encoding` spells them.
pub(crate) const ACCEPTED_ENCODINGS: [&str; 3] = ["gzip", "deflate", "identity"];

/// How the body was compressed by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    /// Not at all.
    Identity,
    /// `gzip` (or its old name `x-gzip`); concatenated members are one body.
    Gzip,
    /// `deflate`: a zlib stream (RFC 9110), not raw deflate.
    Deflate,
}

/// Refuses a body that is not `application/json` (parameters such as `charset=utf-8` allowed,
/// and `application/<something>+json`).
pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let essence = value.map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => Ok(()),
        Some(t) if t.starts_with("application/") && t.ends_with("+json") => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("the body must be JSON (Content-Type: application/json), not {}", value.unwrap_or("unspecified")),
        )
        .expected("application/json")),
    }
}

/// The body's content coding from `Content-Encoding` (absent: identity). `identity` entries in a
/// list are ignored; more than one real coding (`gzip, gzip`) is refused: one layer is all a
/// client needs, and stacking them only multiplies the work.
pub(crate) fn content_coding(headers: &HeaderMap) -> Result<Coding, ApiError> {
    let unsupported = |found: &str| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_encoding",
            format!(
                "Content-Encoding {found:?} is not accepted: send the body as one of {}",
                ACCEPTED_ENCODINGS.join(", ")
            ),
        )
        .expected(ACCEPTED_ENCODINGS.join(", "))
        .allowed(ACCEPTED_ENCODINGS.iter().map(|e| (*e).to_owned()).collect())
    };
    let mut coding = Coding::Identity;
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let Ok(text) = value.to_str() else {
            return Err(unsupported(&String::from_utf8_lossy(value.as_bytes())));
        };
        for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let this = match token.to_ascii_lowercase().as_str() {
                "identity" => continue,
                "gzip" | "x-gzip" => Coding::Gzip,
                "deflate" => Coding::Deflate,
                _ => return Err(unsupported(token)),
            };
            if coding != Coding::Identity {
                return Err(unsupported(text));
            }
            coding = this;
        }
    }
    Ok(coding)
}

/// Reads the whole body as sent, at most `limit` bytes, within `timeout`.
pub(crate) async fn read(headers: &HeaderMap, body: Body, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than this endpoint's limit of {limit} bytes"),
        )
        .expected(format!("at most {limit} bytes"))
        .sizes(0, limit)
    };
    let announced = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_elapsed) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the body did not arrive within {timeout:?}"),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, "body_read_failed", format!("cannot read the body: {e}")))
        }
    }
}

/// Decodes the body as sent: undoes its content coding (at most `limit` bytes out) and parses
/// it as strict JSON. Pure, so every refusal is unit-tested without a server.
pub(crate) fn decode(coding: Coding, raw: &[u8], limit: usize) -> Result<Json, ApiError> {
    match coding {
        // Already bounded while read; checked again so this function holds the rule on its own.
        Coding::Identity if raw.len() > limit => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than this endpoint's limit of {limit} bytes"),
        )
        .expected(format!("at most {limit} bytes"))
        .sizes(raw.len(), limit)),
        Coding::Identity => parse_strict(raw),
        Coding::Gzip => parse_strict(&inflate(&mut MultiGzDecoder::new(raw), limit, "gzip")?),
        Coding::Deflate => parse_strict(&inflate(&mut ZlibDecoder::new(raw), limit, "deflate")?),
    }
}

/// [`decode`], on the blocking pool when the body is large or compressed.
pub(crate) async fn decode_off_thread(coding: Coding, raw: Bytes, limit: usize) -> Result<Json, ApiError> {
    if coding == Coding::Identity && raw.len() < PARSE_OFF_THREAD_BYTES {
        return decode(coding, &raw, limit);
    }
    tokio::task::spawn_blocking(move || decode(coding, &raw, limit))
        .await
        .map_err(|e| ApiError::internal(format!("decoding the body: {e}")))?
}

/// A decompressor over the whole body as sent.
trait Inflater: Read {
    /// The compressed bytes not consumed.
    fn rest(&self) -> &[u8];
}

impl Inflater for MultiGzDecoder<&[u8]> {
    fn rest(&self) -> &[u8] {
        self.get_ref()
    }
}

impl Inflater for ZlibDecoder<&[u8]> {
    fn rest(&self) -> &[u8] {
        self.get_ref()
    }
}

/// Inflates at most `limit` bytes: one more means too large, and nothing past it is inflated.
fn inflate(decoder: &mut impl Inflater, limit: usize, name: &str) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let malformed = |why: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_encoding",
            format!("the {name} body does not decompress: {why}"),
        )
        .expected(format!("a complete {name} stream"))
    };
    decoder.take(cap).read_to_end(&mut out).map_err(|e| malformed(e.to_string()))?;
    if out.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body decompresses to more than this endpoint's limit of {limit} bytes"),
        )
        .expected(format!("at most {limit} bytes once decompressed"))
        .sizes(0, limit));
    }
    // A zlib stream ends where it says; what follows is not part of the body.
    if !decoder.rest().is_empty() {
        return Err(malformed(format!("{} bytes after the end of the compressed data", decoder.rest().len())));
    }
    Ok(out)
}

/// Parses JSON strictly: 400 `malformed_json` with the line and column of the first problem,
/// 400 `duplicate_key` with the repeated key's path.
fn parse_strict(bytes: &[u8]) -> Result<Json, ApiError> {
    from_slice_strict(bytes).map_err(|e| match e {
        StrictJsonError::Syntax(e) => {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("the body is not valid JSON: {e}"))
                .expected("a JSON document")
        }
        StrictJsonError::DuplicateKey { ref path, .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "duplicate_key", e.to_string())
                .field(path.clone())
                .expected("each key at most once per object")
        }
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.clone(), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn json_content_types_only() {
        assert!(check_content_type(&headers(&[(header::CONTENT_TYPE, "application/json")])).is_ok());
        assert!(check_content_type(&headers(&[(header::CONTENT_TYPE, "Application/JSON; charset=utf-8")])).is_ok());
        assert!(check_content_type(&headers(&[(header::CONTENT_TYPE, "application/vnd.sluice+json")])).is_ok());
        let e = check_content_type(&headers(&[(header::CONTENT_TYPE, "text/plain")])).expect_err("text");
        assert_eq!((e.status, e.code()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"));
        assert!(check_content_type(&HeaderMap::new()).is_err());
    }

    #[tokio::test]
    async fn limits_and_parse_errors() {
        let none = HeaderMap::new();
        let ok = read(&none, Body::from("[1,2]"), 5, Duration::from_secs(1)).await.expect("at the limit");
        assert_eq!(&ok[..], b"[1,2]");
        let e = read(&none, Body::from("[1,2,3]"), 5, Duration::from_secs(1)).await.expect_err("over");
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let announced = headers(&[(header::CONTENT_LENGTH, "6000000")]);
        let e = read(&announced, Body::empty(), 5, Duration::from_secs(1)).await.expect_err("announced");
        assert_eq!(e.code(), "payload_too_large");

        let e = decode(Coding::Identity, b"{\"a\": 1,\n \"b\": }", 100).expect_err("malformed");
        assert_eq!((e.status, e.code()), (StatusCode::BAD_REQUEST, "malformed_json"));
        assert!(e.body().message.contains("line 2 column"), "{}", e.body().message);
        let big = format!("[{}0]", "1,".repeat(PARSE_OFF_THREAD_BYTES));
        let parsed = decode_off_thread(Coding::Identity, Bytes::from(big), usize::MAX).await.expect("large bodies too");
        assert_eq!(parsed.as_array().map(Vec::len), Some(PARSE_OFF_THREAD_BYTES + 1));
    }

    fn compress(coding: Coding, bytes: &[u8]) -> Vec<u8> {
        use flate2::Compression;
        use flate2::write::{GzEncoder, ZlibEncoder};
        use std::io::Write;
        match coding {
            Coding::Identity => bytes.to_vec(),
            Coding::Gzip => {
                let mut e = GzEncoder::new(Vec::new(), Compression::fast());
                e.write_all(bytes).expect("compress");
                e.finish().expect("compress")
            }
            Coding::Deflate => {
                let mut e = ZlibEncoder::new(Vec::new(), Compression::fast());
                e.write_all(bytes).expect("compress");
                e.finish().expect("compress")
            }
        }
    }

    #[test]
    fn content_codings() {
        let coding = |v: &'static str| content_coding(&headers(&[(header::CONTENT_ENCODING, v)]));
        assert_eq!(content_coding(&HeaderMap::new()).ok(), Some(Coding::Identity));
        assert_eq!(coding("GZIP").ok(), Some(Coding::Gzip));
        assert_eq!(coding("x-gzip").ok(), Some(Coding::Gzip));
        assert_eq!(coding("deflate").ok(), Some(Coding::Deflate));
        assert_eq!(coding("identity").ok(), Some(Coding::Identity));
        assert_eq!(coding("identity, gzip").ok(), Some(Coding::Gzip));
        for refused in ["br", "zstd", "gzip, gzip", "gzip, deflate", "compress"] {
            let e = coding(refused).expect_err(refused);
            assert_eq!((e.status, e.code()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_content_encoding"));
            assert_eq!(
                e.body().allowed.as_deref(),
                Some(&["gzip".to_owned(), "deflate".into(), "identity".into()][..])
            );
        }
    }

    #[test]
    fn compressed_bodies_decode_within_the_limit() {
        let json = br#"{"aggregate_id": "u-1", "items": [1, 2, 3]}"#;
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Identity] {
            let raw = compress(coding, json);
            let decoded = decode(coding, &raw, json.len()).expect("at the limit");
            assert_eq!(decoded["items"][2], 3, "{coding:?}");
            let e = decode(coding, &raw, json.len() - 1).expect_err("one byte over once decompressed");
            assert_eq!((e.status, e.code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"), "{coding:?}");
        }
        // Concatenated gzip members are one body (RFC 1952).
        let mut two = compress(Coding::Gzip, b"[1,");
        two.extend(compress(Coding::Gzip, b"2]"));
        assert_eq!(decode(Coding::Gzip, &two, 100).ok(), Some(serde_json::json!([1, 2])));
    }

    /// Counts the bytes read out of a decompressor.
    struct Counting<D>(D, usize);

    impl<D: Read> Read for Counting<D> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1 += n;
            Ok(n)
        }
    }

    impl<D: Inflater> Inflater for Counting<D> {
        fn rest(&self) -> &[u8] {
            self.0.rest()
        }
    }

    #[test]
    fn a_zip_bomb_is_refused_without_inflating_it() {
        let spaces = vec![b' '; 16 << 20];
        let bomb = compress(Coding::Gzip, &spaces);
        assert!(bomb.len() < spaces.len() / 100, "{} bytes", bomb.len());
        let limit = 64 << 10;
        let mut decoder = Counting(MultiGzDecoder::new(&bomb[..]), 0);
        let e = inflate(&mut decoder, limit, "gzip").expect_err("a bomb");
        assert_eq!(e.code(), "payload_too_large");
        assert_eq!(decoder.1, limit + 1, "nothing inflated past one byte over the limit");
        assert_eq!(decode(Coding::Gzip, &bomb, limit).expect_err("a bomb").status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn corrupt_compression_is_a_400() {
        let json = br#"{"a": 1}"#;
        for coding in [Coding::Gzip, Coding::Deflate] {
            let good = compress(coding, json);
            let mut flipped = good.clone();
            let middle = flipped.len() / 2;
            flipped[middle] ^= 0xff;
            let truncated = &good[..good.len() - 3];
            let mut trailing = good.clone();
            trailing.extend_from_slice(b"garbage");
            for (what, raw) in [("flipped", &flipped[..]), ("truncated", truncated), ("trailing", &trailing[..])] {
                let e = decode(coding, raw, 1000).expect_err(what);
                assert_eq!((e.status, e.code()), (StatusCode::BAD_REQUEST, "malformed_encoding"), "{coding:?} {what}");
            }
            // A plain body labelled as compressed.
            let e = decode(coding, json, 1000).expect_err("not compressed");
            assert_eq!(e.code(), "malformed_encoding", "{coding:?}");
        }
    }

    #[test]
    fn a_repeated_key_is_refused_with_its_path() {
        let e = decode(Coding::Identity, br#"{"items": [{"sku": 1, "sku": 2}]}"#, 100).expect_err("duplicate");
        assert_eq!((e.status, e.code()), (StatusCode::BAD_REQUEST, "duplicate_key"));
        assert_eq!(e.body().field.as_deref(), Some("$.items[0].sku"));
    }
}
