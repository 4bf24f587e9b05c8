//! The ingest gateway against the real Kafka and registry, started in-process on
//! `127.0.0.1:0` with [`gateway::serve`] and driven over HTTP: an acknowledged event is on Kafka
//! where the answer says; every kind of bad input gets its status and body and publishes nothing
//! (the topics' high watermarks do not move); a batch publishes exactly its valid events; tokens
//! and scopes are enforced; a refusing gate answers 429; readiness follows the services; a
//! shutdown finishes the requests in flight. Hostile input (oversized events and ids, repeated
//! keys, compressed and mislabelled bodies, slow and surplus connections) gets a 4xx or a closed
//! connection, never a 5xx.
//!
//! Each test has its own topics (`fresh_topology`), so runs never collide.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use apache_avro::Schema;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use schema_registry_converter::async_impl::schema_registry::{SrSettings, get_schema_by_id};
use serde_json::{Value, json};
use sluice_core::Connections;
use sluice_core::avro::{avro_to_json, decode};
use sluice_core::framing::unframe;
use sluice_core::topology::Topology;
use sluice_producers::admin::schemas;
use sluice_producers::admin::topics::TopicAdmin;
use sluice_producers::gateway::metrics::{PrometheusHandle, prometheus_builder};
use sluice_producers::gateway::{self, Decision, GatewayConfig, GatewayState, IntakeGate, Tokens};
use sluice_producers::{Publisher, PublisherOptions, Registry, Uuid};
use sluice_tests::{connections, fresh_topology, unique, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const PURCHASE: &str = "engagement.purchase_completed";
const REGISTERED: &str = "user.registered";
/// May post every type.
const ALL_TOKEN: &str = "all-types-token-0123456789";
/// May post `user.*` only.
const USERS_TOKEN: &str = "users-only-token-0123456789";

/// A fresh topology with its topics created and its schemas registered.
struct Rig {
    topology: Arc<Topology>,
    engagement: String,
    users: String,
}

async fn rig(name: &str) -> Rig {
    let sfx = unique(name);
    let path: PathBuf = fresh_topology(&sfx);
    let topology = Topology::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let conns = connections();
    let admin = TopicAdmin::new(&conns.kafka, Duration::from_secs(30)).expect("admin client");
    let plans = within("plan topics", 60, admin.plan(&topology)).await.expect("plan");
    let outcomes = within("create topics", 60, admin.apply(plans)).await.expect("apply");
    assert!(outcomes.iter().all(|o| o.failures.is_empty()), "{outcomes:?}");
    let registry = Registry::new(&conns.registry, Duration::from_secs(30)).expect("registry client");
    for outcome in within("register schemas", 60, schemas::register(&registry, &topology)).await {
        assert!(outcome.result.is_ok(), "{}: {:?}", outcome.event_type, outcome.result);
    }
    Rig { topology: Arc::new(topology), engagement: format!("engagement_{sfx}"), users: format!("users_{sfx}") }
}

/// The process's Prometheus recorder (one per test binary).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| prometheus_builder().install_recorder().expect("install the recorder")).clone()
}

/// A gateway running in this process, stopped when `stop` is called (or the test ends).
struct Running {
    base: String,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), gateway::GatewayError>>,
}

struct Options {
    config: GatewayConfig,
    gate: Option<Arc<dyn IntakeGate>>,
    connections: Connections,
    delivery_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        let mut config = GatewayConfig::default();
        config.ready_interval = Duration::from_millis(300);
        config.probe_timeout = Duration::from_secs(2);
        Self { config, gate: None, connections: connections(), delivery_timeout: Duration::from_secs(10) }
    }
}

async fn start(rig: &Rig, options: Options) -> Running {
    let mut opts = PublisherOptions::new("gateway-test");
    opts.auto_register = false;
    opts.delivery_timeout = options.delivery_timeout;
    opts.linger = Duration::from_millis(1);
    let publisher = Arc::new(Publisher::new(Arc::clone(&rig.topology), &options.connections, opts).expect("publisher"));
    let tokens = Tokens::parse(&format!("all:{ALL_TOKEN}:*\nusers:{USERS_TOKEN}:user.*"), "test").expect("tokens");
    let mut state = GatewayState::new(publisher, &options.connections, tokens, options.config)
        .expect("gateway state")
        .with_metrics(metrics_handle());
    if let Some(gate) = options.gate {
        state = state.with_gate(gate);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(gateway::serve(listener, state, async move {
        let _ = rx.await;
    }));
    Running { base, http: reqwest::Client::new(), stop: Some(tx), task }
}

impl Running {
    async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        self.post_raw(path, token, "application/json", body.to_string()).await
    }

    async fn post_raw(&self, path: &str, token: Option<&str>, content_type: &str, body: String) -> (StatusCode, Value) {
        let (status, _, body) = self.post_full(path, token, content_type, body).await;
        (status, body)
    }

    async fn post_full(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: String,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.post_encoded(path, token, content_type, None, body.into_bytes()).await
    }

    /// Posts `body` as is, labelled with `encoding` (`Content-Encoding`) when given.
    async fn post_encoded(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        encoding: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).header(CONTENT_TYPE, content_type).body(body);
        if let Some(encoding) = encoding {
            request = request.header(CONTENT_ENCODING, encoding);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = within("gateway request", 60, request.send()).await.expect("an answer");
        let status = response.status();
        let headers = response.headers().clone();
        let text = within("gateway answer", 30, response.text()).await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("a JSON body, got {text:?}: {e}"));
        (status, headers, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = within("gateway request", 30, self.http.get(format!("{}{path}", self.base)).send())
            .await
            .expect("an answer");
        let status = response.status();
        (status, response.text().await.expect("a body"))
    }

    /// Stops the gateway and waits for its drain.
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        within("gateway drain", 60, self.task).await.expect("serve task").expect("serve ended cleanly");
    }
}

fn purchase(user: &str, n: i64) -> Value {
    json!({
        "aggregate_id": user, "aggregate_version": n, "occurred_at": "2026-11-26T04:28:21.123Z",
        "user_id": user, "order_id": format!("o-{n}"), "amount_cents": 100 * n, "currency": "EUR", "items": 1
    })
}

fn registration(user: &str) -> Value {
    json!({
        "event_type": REGISTERED, "aggregate_id": user, "aggregate_version": 1,
        "email": format!("{user}@example.com"), "display_name": user, "country": "FR"
    })
}

/// Sum of the high watermarks of every partition of `topic`. Retried for a while: just after
/// the topic was created, a partition may not have its leader yet.
fn high_watermarks(topic: &str) -> i64 {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &connections().kafka.brokers).create().expect("consumer");
    let mut last_error = None;
    for _ in 0..40 {
        let sum = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).and_then(|metadata| {
            metadata.topics()[0]
                .partitions()
                .iter()
                .map(|p| consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10)).map(|(_, high)| high))
                .sum::<Result<i64, _>>()
        });
        match sum {
            Ok(sum) => return sum,
            Err(e) => last_error = Some(e),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("no watermarks of {topic} within 10 s: {last_error:?}");
}

fn watermarks(rig: &Rig) -> (i64, i64) {
    (high_watermarks(&rig.engagement), high_watermarks(&rig.users))
}

/// The record at `topic`/`partition`/`offset`, decoded with its writer schema from the registry.
async fn read_at(topic: &str, partition: i32, offset: i64) -> (String, Value) {
    let conns = connections();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &conns.kafka.brokers)
        .set("group.id", unique("gateway_test_reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(offset)).expect("assign");
    consumer.assign(&assignment).expect("assign");
    let msg = within("consume", 60, consumer.recv()).await.expect("the record");
    assert_eq!((msg.partition(), msg.offset()), (partition, offset));
    let framed = unframe(msg.payload().expect("a value")).expect("Confluent framing");
    let registry = SrSettings::new(conns.registry.url);
    let registered = within("schema by id", 30, get_schema_by_id(framed.schema_id, &registry)).await.expect("schema");
    let schema = Schema::parse_str(&registered.schema).expect("schema");
    let key = String::from_utf8(msg.key().expect("a key").to_vec()).expect("utf-8 key");
    (key, avro_to_json(&decode(framed.body, &schema, None).expect("decodes"), &schema))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_event_is_on_kafka_where_the_answer_says() {
    let rig = rig("gw_single").await;
    let gw = start(&rig, Options::default()).await;

    // The client's own event_id (any UUID spelling) is the idempotency key; event_type comes from
    // the path and producer from the token's name.
    let id = Uuid::new_v4();
    let mut event = purchase("user-1", 3);
    event["event_id"] = json!(id.to_string().to_uppercase());
    let (status, body) = gw.post(&format!("/v1/events/{PURCHASE}"), Some(ALL_TOKEN), &event).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["event_id"], id.to_string());
    assert_eq!(body["event_type"], PURCHASE);
    assert_eq!(body["topic"], rig.engagement.as_str());
    let (partition, offset) =
        (body["partition"].as_i64().expect("partition"), body["offset"].as_i64().expect("offset"));

    let (key, back) = read_at(&rig.engagement, i32::try_from(partition).expect("i32"), offset).await;
    assert_eq!(key, "user-1");
    assert_eq!(back["event_id"], id.to_string());
    assert_eq!(back["event_type"], PURCHASE);
    assert_eq!(back["producer"], "all");
    assert_eq!(back["amount_cents"], 300);
    // Read back through the generic Avro → JSON rendering: a timestamp as RFC 3339 text.
    assert_eq!(back["occurred_at"], "2026-11-26T04:28:21.123Z");
    assert_eq!(back["session_id"], Value::Null);

    // Without an event_id the gateway makes one (a UUID v4) and says which.
    let (status, body) = gw.post(&format!("/v1/events/{PURCHASE}"), Some(ALL_TOKEN), &purchase("user-2", 1)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let generated = Uuid::parse_str(body["event_id"].as_str().expect("event_id")).expect("a UUID");
    assert_eq!(generated.get_version_num(), 4);

    let (status, text) = gw.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("sluice_gateway_requests_total"), "{text}");
    assert!(text.contains(&format!("sluice_gateway_events_published_total{{event_type=\"{PURCHASE}\"}}")), "{text}");
    assert!(text.contains("sluice_gateway_request_duration_seconds_bucket"), "histogram buckets: {text}");
    gw.stop().await;
}

/// A bad request and the refusal it must get.
struct Case {
    what: &'static str,
    path: String,
    content_type: &'static str,
    body: String,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
    expected: Option<&'static str>,
}

impl Case {
    fn new(what: &'static str, path: &str, body: String) -> Self {
        let path = path.to_owned();
        Self { what, path, content_type: "application/json", body, status: 0, code: "", field: None, expected: None }
    }

    fn content_type(mut self, content_type: &'static str) -> Self {
        self.content_type = content_type;
        self
    }

    fn answer(mut self, status: u16, code: &'static str) -> Self {
        (self.status, self.code) = (status, code);
        self
    }

    fn at(mut self, field: &'static str, expected: Option<&'static str>) -> Self {
        (self.field, self.expected) = (Some(field), expected);
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_4xx_and_publishes_nothing() {
    let rig = rig("gw_bad").await;
    let mut options = Options::default();
    options.config.max_body_bytes = 4096;
    let gw = start(&rig, options).await;
    let single = format!("/v1/events/{PURCHASE}");
    let before = watermarks(&rig);

    let with = |f: &dyn Fn(&mut Value)| {
        let mut e = purchase("user-1", 1);
        f(&mut e);
        e.to_string()
    };
    let cases = [
        Case::new("malformed JSON", &single, "{\"aggregate_id\": ".to_owned()).answer(400, "malformed_json"),
        Case::new("wrong type", &single, with(&|e| e["amount_cents"] = json!("12")))
            .answer(422, "wrong_type")
            .at("$.amount_cents", Some("long")),
        Case::new("missing field", &single, with(&|e| drop(e.as_object_mut().map(|o| o.remove("order_id")))))
            .answer(422, "missing_field")
            .at("$.order_id", None),
        Case::new("unknown field", &single, with(&|e| e["coupon"] = json!("X")))
            .answer(422, "unknown_field")
            .at("$.coupon", None),
        Case::new("not a UUID", &single, with(&|e| e["event_id"] = json!("not-a-uuid")))
            .answer(422, "invalid_uuid")
            .at("$.event_id", Some("uuid")),
        Case::new("type mismatch", &single, with(&|e| e["event_type"] = json!(REGISTERED)))
            .answer(422, "event_type_mismatch")
            .at("$.event_type", Some(PURCHASE)),
        Case::new("not an object", &single, "[1, 2]".to_owned()).answer(422, "wrong_type").at("$", Some("object")),
        Case::new("unknown type", "/v1/events/engagement.nope", with(&|_| {}))
            .answer(404, "unknown_event_type")
            .at("$.event_type", None),
        Case::new("oversized", &single, with(&|e| e["order_id"] = json!("x".repeat(5000))))
            .answer(413, "payload_too_large"),
        Case::new("content type", &single, with(&|_| {}))
            .content_type("text/plain")
            .answer(415, "unsupported_media_type"),
        Case::new("batch not an array", "/v1/batch", with(&|_| {}))
            .answer(422, "wrong_type")
            .at("$", Some("array of events")),
        Case::new("batch malformed", "/v1/batch", "[{".to_owned()).answer(400, "malformed_json"),
        Case::new(
            "misspelt field",
            &single,
            with(&|e| {
                if let Some(o) = e.as_object_mut() {
                    o.remove("amount_cents");
                    o.insert("amount_cent".into(), json!(1));
                }
            }),
        )
        .answer(422, "unknown_field")
        .at("$.amount_cent", None),
    ];
    for case in cases {
        let what = case.what;
        let (got, headers, answer) = gw.post_full(&case.path, Some(ALL_TOKEN), case.content_type, case.body).await;
        assert_eq!(got.as_u16(), case.status, "{what}: {answer}");
        assert_eq!(headers[CONTENT_TYPE], "application/json", "{what}");
        let error = &answer["error"];
        assert_eq!(error["code"], case.code, "{what}: {answer}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {answer}");
        assert_eq!(error["field"].as_str(), case.field, "{what}: {answer}");
        if let Some(expected) = case.expected {
            assert_eq!(error["expected"], expected, "{what}: {answer}");
        }
        if what == "misspelt field" {
            assert_eq!(error["suggestion"], "amount_cents", "{answer}");
        }
    }
    assert_eq!(watermarks(&rig), before, "nothing was published for a refused event");

    // The watermarks do see a publish: one valid event moves them by exactly one.
    let (status, body) = gw.post(&single, Some(ALL_TOKEN), &purchase("user-1", 1)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(watermarks(&rig), (before.0 + 1, before.1));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_publishes_its_valid_events_and_reports_each() {
    let rig = rig("gw_batch").await;
    let gw = start(&rig, Options::default()).await;
    let before = watermarks(&rig);

    // One type: the third event is invalid; the four others are published, in order.
    let mut events: Vec<Value> = (1..=5).map(|n| purchase("user-7", n)).collect();
    events[2]["amount_cents"] = json!("a lot");
    let (status, body) = gw.post(&format!("/v1/events/{PURCHASE}/batch"), Some(ALL_TOKEN), &json!(events)).await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
    assert_eq!((body["published"].as_u64(), body["failed"].as_u64()), (Some(4), Some(1)), "{body}");
    let results = body["results"].as_array().expect("results");
    let statuses: Vec<u64> = results.iter().map(|r| r["status"].as_u64().expect("status")).collect();
    assert_eq!(statuses, [201, 201, 422, 201, 201]);
    assert_eq!(results[2]["error"]["code"], "wrong_type");
    assert_eq!(results[2]["error"]["field"], "$.amount_cents");
    assert!(results[2]["event_id"].is_string(), "a failed event still says its id: {body}");
    let offsets: Vec<i64> = results.iter().filter_map(|r| r["offset"].as_i64()).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "one aggregate, one partition, in order: {offsets:?}");
    assert_eq!(watermarks(&rig), (before.0 + 4, before.1));

    // Mixed types with a token scoped to users: per event 201, 403, 422, 404.
    let mut bad_type = registration("user-9");
    bad_type["event_type"] = json!("user.nope");
    let mut untyped = registration("user-8");
    untyped.as_object_mut().expect("object").remove("event_type");
    let mut scoped = purchase("user-9", 1);
    scoped["event_type"] = json!(PURCHASE);
    let (status, headers, body) = gw
        .post_full(
            "/v1/batch",
            Some(USERS_TOKEN),
            "application/json",
            json!([registration("user-9"), scoped, untyped, bad_type]).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
    assert!(!headers.contains_key(RETRY_AFTER), "no retry helps a client error");
    let results = body["results"].as_array().expect("results");
    let got: Vec<(u64, &str)> = results
        .iter()
        .map(|r| (r["status"].as_u64().expect("status"), r["error"]["code"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(got, [(201, ""), (403, "forbidden"), (422, "missing_field"), (404, "unknown_event_type")], "{body}");
    assert_eq!(results[0]["topic"], rig.users.as_str());
    assert_eq!(watermarks(&rig), (before.0 + 4, before.1 + 1));

    // All valid: 200.
    let (status, body) =
        gw.post("/v1/batch", Some(ALL_TOKEN), &json!([registration("user-10"), {"event_type": PURCHASE, "aggregate_id": "u", "aggregate_version": 1, "user_id": "u", "order_id": "o", "amount_cents": 1, "currency": "EUR", "items": 1}])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["published"], 2);
    assert_eq!(watermarks(&rig), (before.0 + 5, before.1 + 2));

    // Too many events: refused whole.
    let mut options = Options::default();
    options.config.max_batch_events = 3;
    let small = start(&rig, options).await;
    let (status, body) =
        small.post(&format!("/v1/events/{PURCHASE}/batch"), Some(ALL_TOKEN), &json!(vec![purchase("u", 1); 4])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("too_many_events")));
    assert_eq!(watermarks(&rig), (before.0 + 5, before.1 + 2));
    small.stop().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_required_and_scoped() {
    let rig = rig("gw_auth").await;
    let gw = start(&rig, Options::default()).await;
    let before = watermarks(&rig);
    let path = format!("/v1/events/{REGISTERED}");
    let event = registration("user-1");

    for (what, token) in [("no token", None), ("unknown token", Some("not-a-known-token-at-all"))] {
        let (status, headers, body) = gw.post_full(&path, token, "application/json", event.to_string()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{what}");
        assert!(headers[WWW_AUTHENTICATE].to_str().is_ok_and(|v| v.starts_with("Bearer")), "{what}");
        let text = body.to_string();
        assert!(!text.contains(ALL_TOKEN) && !text.contains("not-a-known"), "no token in answers: {text}");
    }
    let response = gw
        .http
        .post(format!("{}{path}", gw.base))
        .basic_auth("all", Some(ALL_TOKEN))
        .json(&event)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "Basic is not Bearer");

    // The users token may post user.* only: 403 for a purchase, in the single and batch routes.
    let (status, body) = gw.post(&format!("/v1/events/{PURCHASE}"), Some(USERS_TOKEN), &purchase("u", 1)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{body}");
    let (status, _) =
        gw.post(&format!("/v1/events/{PURCHASE}/batch"), Some(USERS_TOKEN), &json!([purchase("u", 1)])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // An unknown type lists only what the token may post.
    let (status, body) = gw.post("/v1/events/user.nope", Some(USERS_TOKEN), &event).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let allowed: Vec<&str> =
        body["error"]["allowed"].as_array().expect("allowed").iter().filter_map(Value::as_str).collect();
    assert!(!allowed.is_empty() && allowed.iter().all(|t| t.starts_with("user.")), "{allowed:?}");
    assert_eq!(watermarks(&rig), before, "nothing published");

    let (status, body) = gw.post(&path, Some(USERS_TOKEN), &event).await;
    assert_eq!(status, StatusCode::CREATED, "in scope: {body}");
    gw.stop().await;
}

/// Refuses `engagement.*` for 7 s; lets the rest in.
#[derive(Debug)]
struct RefuseEngagement;

impl IntakeGate for RefuseEngagement {
    fn check(&self, event_type: &str) -> Decision {
        if event_type.starts_with("engagement.") {
            Decision::Refuse { retry_after: Duration::from_secs(7) }
        } else {
            Decision::Allow
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_gate_answers_429_with_retry_after() {
    let rig = rig("gw_gate").await;
    let gate: Arc<dyn IntakeGate> = Arc::new(RefuseEngagement);
    let gw = start(&rig, Options { gate: Some(gate), ..Options::default() }).await;
    let before = watermarks(&rig);

    let (status, headers, body) = gw
        .post_full(&format!("/v1/events/{PURCHASE}"), Some(ALL_TOKEN), "application/json", purchase("u", 1).to_string())
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers[RETRY_AFTER], "7");
    assert_eq!(
        (body["error"]["code"].as_str(), body["error"]["retry_after_seconds"].as_u64()),
        (Some("backpressure"), Some(7))
    );

    let mut refused = purchase("u", 2);
    refused["event_type"] = json!(PURCHASE);
    let (status, headers, body) = gw
        .post_full("/v1/batch", Some(ALL_TOKEN), "application/json", json!([registration("u-1"), refused]).to_string())
        .await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
    assert_eq!(headers[RETRY_AFTER], "7");
    let statuses: Vec<u64> =
        body["results"].as_array().expect("results").iter().filter_map(|r| r["status"].as_u64()).collect();
    assert_eq!(statuses, [201, 429]);
    assert_eq!(watermarks(&rig), (before.0, before.1 + 1), "only the allowed type was published");
    gw.stop().await;
}

/// An address nothing listens on.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr.to_string()
}

/// Waits until `/readyz` answers `want` from a completed probe (before the first probe it is a
/// 503 that says nothing yet about Kafka or the registry).
async fn await_ready(gw: &Running, want: StatusCode) -> Value {
    let mut last = (StatusCode::OK, String::new());
    for _ in 0..60 {
        last = gw.get("/readyz").await;
        let report: Value = serde_json::from_str(&last.1).unwrap_or(Value::Null);
        let probed = report["checked_at_ms"].as_u64().is_some_and(|t| t > 0);
        if last.0 == want && probed {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("/readyz did not become {want} within 15 s; last {:?}", last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_503s_follow_kafka_and_the_registry() {
    let rig = rig("gw_ready").await;
    let good = start(&rig, Options::default()).await;
    assert_eq!(good.get("/healthz").await.0, StatusCode::OK);
    let report = await_ready(&good, StatusCode::OK).await;
    assert_eq!((report["kafka"]["ok"].as_bool(), report["registry"]["ok"].as_bool()), (Some(true), Some(true)));

    // Kafka away: not ready, and a publish times out into a 503 with Retry-After and the
    // event_id to retry with.
    let mut no_kafka = Options::default();
    no_kafka.connections.kafka.brokers = closed_port().await;
    no_kafka.config.request_timeout = Duration::from_secs(2);
    no_kafka.delivery_timeout = Duration::from_secs(2);
    let gw = start(&rig, no_kafka).await;
    assert_eq!(gw.get("/healthz").await.0, StatusCode::OK, "the process is up");
    let report = await_ready(&gw, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(report["kafka"]["ok"], false, "{report}");
    let (status, headers, body) = gw
        .post_full(&format!("/v1/events/{PURCHASE}"), Some(ALL_TOKEN), "application/json", purchase("u", 1).to_string())
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "publish_timeout");
    assert!(headers.contains_key(RETRY_AFTER));
    assert!(body["error"]["event_id"].is_string(), "the id to retry with: {body}");
    gw.stop().await;

    // The registry away: not ready, and a first publish of a type cannot resolve its schema.
    let mut no_registry = Options::default();
    no_registry.connections.registry.url = format!("http://{}/apis/ccompat/v7", closed_port().await);
    let gw = start(&rig, no_registry).await;
    let report = await_ready(&gw, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(
        (report["kafka"]["ok"].as_bool(), report["registry"]["ok"].as_bool()),
        (Some(true), Some(false)),
        "{report}"
    );
    let (status, headers, body) = gw
        .post_full(
            &format!("/v1/events/{REGISTERED}"),
            Some(ALL_TOKEN),
            "application/json",
            registration("u").to_string(),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("registry_unavailable")),
        "{body}"
    );
    assert!(headers.contains_key(RETRY_AFTER));
    gw.stop().await;
    good.stop().await;
}

/// Holds every request 800 ms, counting the requests it was asked about.
#[derive(Debug, Default)]
struct Slow(std::sync::atomic::AtomicUsize);

impl IntakeGate for Slow {
    fn check(&self, _: &str) -> Decision {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Decision::Delay(Duration::from_millis(800))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_requests_in_flight() {
    let rig = rig("gw_drain").await;
    let slow = Arc::new(Slow::default());
    let gate: Arc<dyn IntakeGate> = slow.clone();
    let gw = start(&rig, Options { gate: Some(gate), ..Options::default() }).await;
    let before = watermarks(&rig);

    let http = gw.http.clone();
    let url = format!("{}/v1/events/{REGISTERED}", gw.base);
    let in_flight: Vec<_> = (0..3)
        .map(|i| {
            let request = http.post(&url).bearer_auth(ALL_TOKEN).json(&registration(&format!("u-{i}")));
            tokio::spawn(async move { request.send().await.map(|r| r.status()) })
        })
        .collect();
    // Stop once all three are in the gateway's hands: each asked the gate, which holds it 800 ms.
    let asked = std::time::Instant::now();
    while slow.0.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        assert!(asked.elapsed() < Duration::from_secs(10), "the 3 requests did not reach the gate within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let base = gw.base.clone();
    gw.stop().await;
    let mut statuses = BTreeMap::new();
    for request in in_flight {
        let status = request.await.expect("task").expect("an answer, not a dropped connection");
        *statuses.entry(status.as_u16()).or_insert(0) += 1;
    }
    assert_eq!(statuses, BTreeMap::from([(201, 3)]), "every in-flight request finished");
    assert_eq!(watermarks(&rig), (before.0, before.1 + 3));
    let after = reqwest::Client::new().get(format!("{base}/healthz")).send().await;
    assert!(after.is_err(), "the listener is closed after shutdown");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("compress");
    encoder.finish().expect("compress")
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("compress");
    encoder.finish().expect("compress")
}

/// Characters that do not compress much, so a record's size on the wire stays its size.
fn noise(len: usize) -> String {
    use rand::Rng as _;
    let mut rng = rand::rng();
    (0..len).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect()
}

/// Every answer is a refusal in the gateway's shape, 4xx, with this code.
fn refused(what: &str, status: StatusCode, body: &Value, want: (u16, &str)) {
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (want.0, Some(want.1)), "{what}: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_a_4xx_never_a_5xx() {
    let rig = rig("gw_hostile").await;
    let gw = start(&rig, Options::default()).await;
    let single = format!("/v1/events/{PURCHASE}");
    let typed_batch = format!("/v1/events/{PURCHASE}/batch");
    let before = watermarks(&rig);

    // An event under the 1 MiB body limit but over Kafka's record limit: 413 naming both sizes.
    let mut big = purchase("user-1", 1);
    big["order_id"] = json!(noise(1_040_000));
    let (status, body) = gw.post(&single, Some(ALL_TOKEN), &big).await;
    refused("1.04 MB event", status, &body, (413, "record_too_large"));
    let (size, limit) = (body["error"]["size_bytes"].as_u64(), body["error"]["limit_bytes"].as_u64());
    assert!(size.zip(limit).is_some_and(|(s, l)| s > l && l <= 1_000_000), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&size.unwrap_or(0).to_string()) && message.contains(&limit.unwrap_or(0).to_string()));

    // A 600 KB aggregate_id: 422 on the field, before anything else is done with it.
    let mut long_id = purchase("user-1", 1);
    long_id["aggregate_id"] = json!("u".repeat(600_000));
    let (status, body) = gw.post(&single, Some(ALL_TOKEN), &long_id).await;
    refused("600 KB aggregate_id", status, &body, (422, "too_long"));
    assert_eq!(body["error"]["field"], "$.aggregate_id");
    let mut at_limit = purchase(&"u".repeat(sluice_core::event::MAX_AGGREGATE_ID_BYTES), 1);
    at_limit["event_id"] = json!(Uuid::new_v4().to_string());
    let (status, body) = gw.post(&single, Some(ALL_TOKEN), &at_limit).await;
    assert_eq!(status, StatusCode::CREATED, "an id at the limit is fine: {body}");

    // A 5 MB event inside a batch: that event 413, the others published.
    let mut huge = purchase("user-2", 2);
    huge["order_id"] = json!(noise(5_000_000));
    let batch = json!([purchase("user-2", 1), huge, purchase("user-2", 3), long_id]);
    let (status, body) = gw.post(&typed_batch, Some(ALL_TOKEN), &batch).await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
    let got: Vec<(u64, &str)> = body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| (r["status"].as_u64().unwrap_or(0), r["error"]["code"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(got, [(201, ""), (413, "record_too_large"), (201, ""), (422, "too_long")], "{body}");
    assert_eq!(watermarks(&rig), (before.0 + 3, before.1), "the valid events only");

    // Repeated keys: the earlier value would never have been validated.
    let duplicate = r#"{"aggregate_id": "u", "aggregate_version": 1, "user_id": "u", "order_id": "o",
        "amount_cents": 1, "currency": "EUR", "items": 1, "amount_cents": "lots"}"#;
    let (status, body) = gw.post_raw(&single, Some(ALL_TOKEN), "application/json", duplicate.to_owned()).await;
    refused("duplicate key", status, &body, (400, "duplicate_key"));
    assert_eq!(body["error"]["field"], "$.amount_cents");
    let (status, body) = gw.post_raw(&typed_batch, Some(ALL_TOKEN), "application/json", format!("[{duplicate}]")).await;
    refused("duplicate key in a batch", status, &body, (400, "duplicate_key"));
    assert_eq!(body["error"]["field"], "$[0].amount_cents");

    // Content-Encoding: gzip and deflate accepted, anything else named as not accepted.
    let event = purchase("user-3", 1).to_string();
    for (encoding, raw) in [("gzip", gzip(event.as_bytes())), ("deflate", zlib(event.as_bytes()))] {
        let (status, _, body) =
            gw.post_encoded(&single, Some(ALL_TOKEN), "application/json", Some(encoding), raw).await;
        assert_eq!(status, StatusCode::CREATED, "{encoding}: {body}");
    }
    let (status, _, body) =
        gw.post_encoded(&single, Some(ALL_TOKEN), "application/json", Some("br"), event.clone().into_bytes()).await;
    refused("plain body labelled br", status, &body, (415, "unsupported_content_encoding"));
    assert_eq!(body["error"]["allowed"], json!(["gzip", "deflate", "identity"]));
    let mut corrupt = gzip(event.as_bytes());
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0xff;
    let (status, _, body) = gw.post_encoded(&single, Some(ALL_TOKEN), "application/json", Some("gzip"), corrupt).await;
    refused("corrupt gzip", status, &body, (400, "malformed_encoding"));
    // 12 MiB of spaces compress to well under the 10 MiB batch limit; inflated, they pass it:
    // refused as too large (decoding stops one byte past the limit).
    let bomb = gzip(&vec![b' '; 12 << 20]);
    assert!(bomb.len() < 1 << 20);
    let (status, _, body) =
        gw.post_encoded(&typed_batch, Some(ALL_TOKEN), "application/json", Some("gzip"), bomb).await;
    refused("gzip bomb", status, &body, (413, "payload_too_large"));

    assert_eq!(watermarks(&rig), (before.0 + 5, before.1), "refusals published nothing");
    gw.stop().await;
}

/// Sets a topic's `max.message.bytes` (AlterConfigs replaces the topic's overrides: fine for a
/// test topic).
async fn set_max_message_bytes(topic: &str, bytes: usize) {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &connections().kafka.brokers).create().expect("admin client");
    let value = bytes.to_string();
    let change = AlterConfig::new(ResourceSpecifier::Topic(topic)).set("max.message.bytes", &value);
    let results =
        within("alter topic config", 30, admin.alter_configs(&[change], &AdminOptions::new())).await.expect("alter");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // The brokers apply it shortly after the controller accepted it: wait until they say so.
    let topics = TopicAdmin::new(&connections().kafka, Duration::from_secs(10)).expect("admin client");
    for _ in 0..40 {
        let described = within("describe topic", 30, topics.describe(&[topic])).await.expect("describe");
        if described.get(topic).and_then(|t| t.max_message_bytes()) == Some(bytes) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{topic}: max.message.bytes is not {bytes} 10 s after the change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topics_own_size_limit_is_read_and_a_late_refusal_is_still_413() {
    let rig = rig("gw_topic_limit").await;
    set_max_message_bytes(&rig.engagement, 20_000).await;
    // One probe, at start: the limits it reads stay what the gateway knows.
    let mut options = Options::default();
    options.config.ready_interval = Duration::from_secs(3600);
    let gw = start(&rig, options).await;
    await_ready(&gw, StatusCode::OK).await;
    let single = format!("/v1/events/{PURCHASE}");
    let before = watermarks(&rig);

    // Read at start-up: refused before sending, with the topic's limit less the batch header.
    let mut event = purchase("user-1", 1);
    event["order_id"] = json!(noise(30_000));
    let (status, body) = gw.post(&single, Some(ALL_TOKEN), &event).await;
    refused("over the topic's limit", status, &body, (413, "record_too_large"));
    assert_eq!(body["error"]["limit_bytes"], 20_000 - 61, "{body}");
    assert_eq!(watermarks(&rig), before);

    // Lowered after that probe: the check passes, the broker refuses, and that is a 413 too.
    set_max_message_bytes(&rig.engagement, 5_000).await;
    let mut event = purchase("user-1", 2);
    event["order_id"] = json!(noise(15_000));
    let (status, body) = gw.post(&single, Some(ALL_TOKEN), &event).await;
    refused("refused by the broker", status, &body, (413, "record_too_large"));
    assert_eq!(body["error"]["limit_bytes"], 20_000 - 61, "the limit the gateway knew: {body}");
    // The producer goes on publishing after a refusal.
    let (status, body) = gw.post(&single, Some(ALL_TOKEN), &purchase("user-1", 3)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    gw.stop().await;
}

/// Reads from `tcp` until the gateway closes it; `Err` if it is still open after `secs`.
async fn closed_within(tcp: &mut tokio::net::TcpStream, secs: u64) -> Result<Duration, String> {
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(secs).saturating_sub(started.elapsed()), tcp.read(&mut buf))
            .await
        {
            Err(_) => return Err(format!("still open after {secs} s")),
            Ok(Ok(0) | Err(_)) => return Ok(started.elapsed()),
            // An answer (hyper's 408) before the close is fine.
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_connections_beyond_the_limit_wait() {
    let rig = rig("gw_slow").await;
    let mut options = Options::default();
    options.config.header_read_timeout = Duration::from_secs(1);
    options.config.max_connections = 2;
    let gw = start(&rig, options).await;
    let addr = gw.base.trim_start_matches("http://").to_owned();

    // Headers at a byte every 200 ms: the connection is closed at the header-read timeout,
    // however steadily the bytes come.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let trickle = async {
        for byte in format!("POST /v1/events/{PURCHASE} HTTP/1.1\r\nHost: x\r\nX-Slow: {}\r\n", "a".repeat(100)).bytes()
        {
            if slow.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), trickle).await;
    let waited = closed_within(&mut slow, 5).await.expect("the slow connection is closed");
    assert!(waited < Duration::from_secs(5));

    // Two idle connections take both slots: a third connection waits for one to close (at
    // the header-read timeout) and is then served.
    let mut idle: Vec<tokio::net::TcpStream> = Vec::new();
    for _ in 0..2 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.expect("connect"));
    }
    // No wait needed for them to take the slots: `connect` returns once the kernel queued the
    // connection in the listen backlog, which the gateway accepts first in, first out, so both
    // idle ones are accepted before the request below (even if one waits for the slow
    // connection's slot to come back).
    let started = std::time::Instant::now();
    let (status, _) = gw.get("/healthz").await;
    assert_eq!(status, StatusCode::OK, "served once a slot freed");
    assert!(started.elapsed() >= Duration::from_millis(500), "it waited: {:?}", started.elapsed());
    for mut tcp in idle {
        closed_within(&mut tcp, 5).await.expect("idle connections are closed at the header-read timeout");
    }
    let (_, text) = gw.get("/metrics").await;
    assert!(text.contains("sluice_gateway_connection_limit_waits_total"), "{text}");
    gw.stop().await;
}

/// Whether the kernel has an established TCP connection from `local` to `remote` (IPv4, read
/// from `/proc/net/tcp`, which prints an address as its network-order bytes read as a native
/// `u32`, and a port in host order): here, the gateway's socket of a test client's connection.
fn established(local: std::net::SocketAddr, remote: std::net::SocketAddr) -> bool {
    let hex = |a: std::net::SocketAddr| match a {
        std::net::SocketAddr::V4(v4) => format!("{:08X}:{:04X}", u32::from_ne_bytes(v4.ip().octets()), v4.port()),
        std::net::SocketAddr::V6(_) => panic!("an IPv4 address: {a}"),
    };
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // 01: TCP_ESTABLISHED.
        f.len() > 3 && f[1] == local && f[2] == remote && f[3] == "01"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off() {
    let rig = rig("gw_stall").await;
    let mut options = Options::default();
    options.config.request_timeout = Duration::from_secs(1);
    // Long enough not to be what closes the connection here.
    options.config.header_read_timeout = Duration::from_secs(60);
    let gw = start(&rig, options).await;
    let addr: std::net::SocketAddr = gw.base.trim_start_matches("http://").parse().expect("address");

    // A batch of 10 000 empty events: each refused, so the answer is megabytes long.
    let path = format!("/v1/events/{PURCHASE}/batch");
    let batch = format!("[{}{{}}]", "{},".repeat(9_999));
    let (status, answer) = gw.post_raw(&path, Some(ALL_TOKEN), "application/json", batch.clone()).await;
    assert_eq!(
        (status, answer["failed"].as_u64()),
        (StatusCode::MULTI_STATUS, Some(10_000)),
        "{}",
        answer["results"][0]
    );
    let answer_len = answer.to_string().len();

    // Such requests pipelined on one connection whose receive buffer is tiny and never read:
    // the answers (far more than the socket buffers hold) stall the gateway's writes.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    let mut tcp = socket.connect(addr).await.expect("connect");
    let client = tcp.local_addr().expect("local address");
    assert!(established(addr, client), "the gateway's end of {client} → {addr} is in /proc/net/tcp");
    let requests = 16;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ALL_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{batch}",
        batch.len()
    );
    let all_answers = requests * answer_len;
    assert!(all_answers > 16 << 20, "{all_answers} bytes of answers must overflow the buffers");
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.write_all(request.repeat(requests).as_bytes())).await;
    // Not reading until the gateway gave up on its stalled writes and closed its end (with a FIN
    // or, requests still unread, a reset): its socket of this connection is no longer established.
    let stalled = std::time::Instant::now();
    while established(addr, client) {
        assert!(
            stalled.elapsed() < Duration::from_secs(20),
            "the gateway still holds the stalled connection after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Reading now gets what was buffered, then the close, long before every answer.
    let mut read = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read += n,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection is still open after {read} bytes");
    assert!(read < all_answers / 2, "cut off after {read} of {all_answers} bytes");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_needs_the_projection_scope_and_a_gateway_that_serves_reads() {
    let rig = rig("gwreads").await;
    let gw = start(&rig, Options::default()).await;
    let get = |token: &'static str| {
        let url = format!("{}/v1/projections/user_state/documents/user::u-1", gw.base);
        let http = gw.http.clone();
        async move {
            let resp = within("read", 30, http.get(url).bearer_auth(token).send()).await.expect("an answer");
            let status = resp.status();
            (status, within("body", 30, resp.json::<Value>()).await.expect("json"))
        }
    };
    // `user.*` may post user events, not read projections.
    let (status, body) = get(USERS_TOKEN).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("projection:user_state"), "{body}");
    // `*` may, but this gateway was given no reader.
    let (status, body) = get(ALL_TOKEN).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_IMPLEMENTED, Some("reads_disabled")),
        "{body}"
    );
}
