//! `sluice gateway` over TLS, and its reloads, through the real binary against the real Kafka and
//! registry: an event posted over HTTPS (the client trusting only the test's CA) is accepted,
//! plain HTTP to the TLS port is not; a rotated certificate is served after SIGHUP, and without
//! one once the file watch sees it; a bad pair keeps the old one serving; a rewritten tokens file
//! takes effect on SIGHUP while a request authenticated before it finishes, and a bad file keeps
//! the tokens in use.
//!
//! Each test writes its own topology (a fresh topic) and certificates to a temporary directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{PrivateClickHouse, WorkerProcess, run_ok, sluice};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SerialNumber};
use serde_json::{Value, json};
use sluice_tests::unique;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EVENT_TYPE: &str = "engagement.purchase_completed";
/// Accepted from the environment; a reload never drops it.
const ENV_TOKEN: &str = "env-token-0123456789abcdef";
const TOKEN_A: &str = "token-a-0123456789abcdef";
const TOKEN_B: &str = "token-b-0123456789abcdef";

/// A topology of one topic and one event type in a fresh directory, its topic created and its
/// schema registered.
fn setup(prefix: &str) -> (PathBuf, String) {
    let topic = unique(&format!("{prefix}_purchases"));
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas").canonicalize().expect("schemas dir");
    let text = format!(
        r#"
[topics.{topic}]
partitions = 1
replication_factor = 1
retention = "1d"

[events."{EVENT_TYPE}"]
topic = "{topic}"
schema = "{schemas}/engagement/purchase_completed.avsc"
"#,
        schemas = schemas.display()
    );
    let dir = std::env::temp_dir().join(unique("sluice-gateway-tls"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("topology.toml");
    std::fs::write(&path, text).expect("write topology");
    run_ok(sluice(&path).args(["topics", "apply"]));
    run_ok(sluice(&path).args(["schemas", "register"]));
    (path, topic)
}

fn purchase(n: u32) -> Value {
    json!({
        "aggregate_id": format!("user-{n}"), "aggregate_version": n, "user_id": format!("user-{n}"),
        "order_id": format!("o-{n}"), "amount_cents": 1999, "currency": "EUR", "items": 1
    })
}

/// The test's certificate authority, and server certificates it signs for `127.0.0.1`.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate: its PEM, its key's PEM, its DER (what the client sees).
struct Leaf {
    cert: String,
    key: String,
    der: Vec<u8>,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "sluice test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key")).expect("ca");
        Self { ca }
    }

    fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    fn leaf(&self, common_name: &str, serial: u64) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("leaf");
        Leaf { cert: cert.pem(), key: key.serialize_pem(), der: cert.der().to_vec() }
    }
}

fn install(dir: &Path, cert: &str, key: &str) {
    std::fs::write(dir.join("cert.pem"), cert).expect("write cert");
    std::fs::write(dir.join("key.pem"), key).expect("write key");
}

/// A `sluice gateway` on a free port, its log next to the topology.
struct Gateway {
    process: WorkerProcess,
    port: u16,
    log: PathBuf,
}

impl Gateway {
    fn spawn(topology: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let port = PrivateClickHouse::free_port();
        let log = topology.with_file_name("gateway.log");
        let mut cmd = sluice(topology);
        cmd.args(["gateway", "--listen", &format!("127.0.0.1:{port}"), "--no-backpressure"])
            .args(args)
            .env_remove("SLUICE_GATEWAY_TOKENS")
            .env("SLUICE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self { process: WorkerProcess(cmd.spawn().expect("spawn gateway")), port, log }
    }

    /// Waits until `GET {base}/path` answers 200 through `client`, failing if the process exits.
    async fn await_ok(&mut self, client: &reqwest::Client, base: &str, path: &str) {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.process.0.try_wait() {
                panic!("the gateway exited with {status}:\n{}", self.log_text());
            }
            if client.get(format!("{base}{path}")).send().await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{path} not 200 within 60 s:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn hangup(&self) {
        let status = Command::new("kill").args(["-HUP", &self.process.0.id().to_string()]).status().expect("kill");
        assert!(status.success(), "kill -HUP failed");
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Polls the async `cond` every 100 ms until it holds; after `secs`, fails saying `what` did not
/// happen (the async sibling of `common::wait_until`).
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, secs: u64, mut cond: impl FnMut() -> F) {
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < Duration::from_secs(secs), "{what}: not within {secs}s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client trusting only the test's CA, keeping what the handshake saw.
fn https_client(pki: &Pki) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).expect("ca pem");
    reqwest::Client::builder().tls_certs_only([ca]).tls_info(true).build().expect("https client")
}

/// The DER of the certificate a new client (a new connection, no session to resume) is served.
async fn served_certificate(pki: &Pki, base: &str) -> Vec<u8> {
    let resp = https_client(pki).get(format!("{base}/healthz")).send().await.expect("https healthz");
    let info = resp.extensions().get::<reqwest::tls::TlsInfo>().expect("tls info");
    info.peer_certificate().expect("a peer certificate").to_vec()
}

async fn post(client: &reqwest::Client, base: &str, token: &str, n: u32) -> (u16, Value) {
    let resp = client
        .post(format!("{base}/v1/events/{EVENT_TYPE}"))
        .bearer_auth(token)
        .json(&purchase(n))
        .send()
        .await
        .expect("post event");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The fingerprint the gateway logs for a certificate.
fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_events_and_a_certificate_rotated_on_sighup() {
    let (topology, topic) = setup("gateway_tls");
    let dir = topology.parent().expect("dir").to_owned();
    let pki = Pki::new();
    let first = pki.leaf("gateway-one", 1);
    install(&dir, &first.cert, &first.key);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    // The file watch is out of the way (an hour): what changes the certificate here is SIGHUP.
    let mut gw = Gateway::spawn(
        &topology,
        &["--tls-cert", cert.to_str().expect("utf-8"), "--watch-interval", "1h"],
        &[
            ("SLUICE_GATEWAY_TLS_KEY_FILE", key.to_str().expect("utf-8")),
            ("SLUICE_GATEWAY_TOKENS", &format!("env:{ENV_TOKEN}:*")),
        ],
    );
    let base = format!("https://127.0.0.1:{}", gw.port);
    let client = https_client(&pki);
    gw.await_ok(&client, &base, "/readyz").await;

    // An event over HTTPS, acknowledged by Kafka, under the first certificate.
    let (status, body) = post(&client, &base, ENV_TOKEN, 1).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["topic"], topic.as_str(), "{body}");
    assert_eq!(served_certificate(&pki, &base).await, first.der);

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{}/healthz", gw.port)).send().await;
    assert!(plain.is_err(), "plain HTTP was answered: {:?}", plain.map(|r| r.status()));
    // Nor does a client that does not trust the CA.
    let untrusting = reqwest::Client::builder().tls_certs_only([]).build().expect("client");
    assert!(untrusting.get(format!("{base}/healthz")).send().await.is_err());

    // A new certificate (another name and serial) in place of the first: served after SIGHUP.
    let second = pki.leaf("gateway-two", 2);
    install(&dir, &second.cert, &second.key);
    assert_eq!(served_certificate(&pki, &base).await, first.der, "no reload before the signal");
    gw.hangup();
    eventually("the new certificate served after SIGHUP", 30, || async {
        served_certificate(&pki, &base).await == second.der
    })
    .await;
    let (status, body) = post(&client, &base, ENV_TOKEN, 2).await;
    assert_eq!(status, 201, "{body}");
    let log = gw.log_text();
    assert!(log.contains("TLS certificate reloaded") && log.contains(&sha256_hex(&second.der)), "{log}");

    // A bad pair (a third certificate with the second's key): logged, the second keeps serving.
    let third = pki.leaf("gateway-three", 3);
    install(&dir, &third.cert, &second.key);
    gw.hangup();
    eventually("the refused reload logged", 30, || async { gw.log_text().contains("TLS certificate not reloaded") })
        .await;
    assert_eq!(served_certificate(&pki, &base).await, second.der);
    let (status, body) = post(&client, &base, ENV_TOKEN, 3).await;
    assert_eq!(status, 201, "{body}");
    let log = gw.log_text();
    let key_line = second.key.lines().nth(1).expect("a base64 line of the key");
    assert!(!log.contains(key_line) && !log.contains(ENV_TOKEN), "key material or a token in the log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_is_served_without_a_signal() {
    let (topology, _) = setup("gateway_tls_watch");
    let dir = topology.parent().expect("dir").to_owned();
    let pki = Pki::new();
    let first = pki.leaf("watched-one", 1);
    install(&dir, &first.cert, &first.key);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let mut gw = Gateway::spawn(
        &topology,
        &[
            "--tls-cert",
            cert.to_str().expect("utf-8"),
            "--tls-key",
            key.to_str().expect("utf-8"),
            "--watch-interval",
            "200ms",
        ],
        &[("SLUICE_GATEWAY_TOKENS", &format!("env:{ENV_TOKEN}:*"))],
    );
    let base = format!("https://127.0.0.1:{}", gw.port);
    let client = https_client(&pki);
    gw.await_ok(&client, &base, "/healthz").await;
    assert_eq!(served_certificate(&pki, &base).await, first.der);

    let second = pki.leaf("watched-two", 2);
    install(&dir, &second.cert, &second.key);
    eventually("the rotated certificate served", 30, || async { served_certificate(&pki, &base).await == second.der })
        .await;
    let log = gw.log_text();
    let reloaded = log.lines().find(|l| l.contains("TLS certificate reloaded")).expect("a reload line");
    assert!(reloaded.contains("the files changed") && reloaded.contains(&sha256_hex(&second.der)), "{reloaded}");
}

/// Sends the headers of a single-event request with `Expect: 100-continue` and waits for the
/// `100 Continue`: the gateway asks for the body only once the token passed.
async fn start_request(port: u16, token: &str, body_len: usize) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let head = format!(
        "POST /v1/events/{EVENT_TYPE} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {body_len}\r\nExpect: 100-continue\r\n\
         Connection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.expect("send headers");
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut buf))
            .await
            .expect("an interim answer within 30 s")
            .expect("read");
        assert!(n > 0, "closed before answering: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 100"), "expected 100 Continue, got {text}");
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_file_reloaded_on_sighup_lets_requests_in_flight_finish() {
    let (topology, _) = setup("gateway_tokens_reload");
    let tokens = topology.with_file_name("tokens");
    std::fs::write(&tokens, format!("# the first client\na:{TOKEN_A}:*\n")).expect("tokens file");
    // A request in flight waits for the reload below: its deadline leaves room for that.
    let mut gw = Gateway::spawn(
        &topology,
        &["--tokens-file", tokens.to_str().expect("utf-8"), "--request-timeout", "60s"],
        &[("SLUICE_GATEWAY_TOKENS", &format!("env:{ENV_TOKEN}:*"))],
    );
    let base = format!("http://127.0.0.1:{}", gw.port);
    let client = reqwest::Client::new();
    gw.await_ok(&client, &base, "/readyz").await;
    assert_eq!(post(&client, &base, TOKEN_A, 1).await.0, 201);
    assert_eq!(post(&client, &base, TOKEN_B, 2).await.0, 401);

    // A request authenticated with A, its body sent in two parts around the reload.
    let body = purchase(3).to_string().into_bytes();
    let mut in_flight = start_request(gw.port, TOKEN_A, body.len()).await;
    let (first_half, second_half) = body.split_at(body.len() / 2);
    in_flight.write_all(first_half).await.expect("first half");

    std::fs::write(&tokens, format!("# rotated: a removed\nb:{TOKEN_B}:*\n")).expect("rewrite tokens");
    gw.hangup();
    eventually("B accepted after SIGHUP", 30, || async { post(&client, &base, TOKEN_B, 4).await.0 == 201 }).await;
    assert_eq!(post(&client, &base, TOKEN_A, 5).await.0, 401, "A was removed");
    assert_eq!(post(&client, &base, ENV_TOKEN, 6).await.0, 201, "the environment's token stays");

    in_flight.write_all(second_half).await.expect("second half");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(30), in_flight.read_to_string(&mut answer))
        .await
        .expect("the answer within 30 s")
        .expect("read the answer");
    assert!(answer.starts_with("HTTP/1.1 201"), "the request in flight did not finish: {answer}");

    // A bad file: logged with its file and line, no token shown, B still accepted.
    std::fs::write(&tokens, format!("b:{TOKEN_B}:*\nc:tiny-secret:*\n")).expect("bad tokens");
    gw.hangup();
    eventually("the refused reload logged", 30, || async { gw.log_text().contains("tokens not reloaded") }).await;
    let log = gw.log_text();
    let refused = log.lines().find(|l| l.contains("tokens not reloaded")).expect("the line");
    assert!(refused.contains(&format!("tokens file {}, line 2", tokens.display())), "{refused}");
    assert_eq!(post(&client, &base, TOKEN_B, 7).await.0, 201, "the previous tokens stay");
    assert_eq!(post(&client, &base, TOKEN_A, 8).await.0, 401);
    for secret in [TOKEN_A, TOKEN_B, ENV_TOKEN, "tiny-secret"] {
        assert!(!log.contains(secret), "a token in the log:\n{log}");
    }
}
