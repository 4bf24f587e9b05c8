//! `sluice publish`, `sluice topics apply` and `sluice schemas register|check` through the real
//! binary against the real services: what a user sees (the tables, the summary, the numbered
//! errors, the exit codes) and what lands on Kafka.
//!
//! Each test writes its own topology (fresh topic names, topic-named subjects) to a temporary
//! directory, so runs never collide.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::json;
use sluice_tests::{high_watermarks, unique};

/// A topology of one purchases topic and one users topic, written to a fresh directory.
fn write_topology(prefix: &str) -> (PathBuf, String, String) {
    let purchases = unique(&format!("{prefix}_purchases"));
    let users = unique(&format!("{prefix}_users"));
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas").canonicalize().expect("schemas dir");
    let text = format!(
        r#"
[topics.{purchases}]
partitions = 3
replication_factor = 1
retention = "1d"

[topics.{users}]
partitions = 2
replication_factor = 1
retention = "1d"

[events."engagement.purchase_completed"]
topic = "{purchases}"
schema = "{schemas}/engagement/purchase_completed.avsc"

[events."user.registered"]
topic = "{users}"
schema = "{schemas}/users/registered.avsc"
"#,
        schemas = schemas.display()
    );
    let dir = std::env::temp_dir().join(unique("sluice-cli-test"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("topology.toml");
    std::fs::write(&path, text).expect("write topology");
    (path, purchases, users)
}

fn sluice(topology: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.arg("--topology").arg(topology).args(args).env("SLUICE_LOG", "error");
    c
}

/// Runs the command; returns (success, stdout, stderr).
fn run(cmd: &mut Command) -> (bool, String, String) {
    let out: Output = cmd.output().expect("run sluice");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn purchase(n: i64, amount: serde_json::Value) -> String {
    json!({
        "event_type": "engagement.purchase_completed", "aggregate_id": format!("user-{n}"),
        "aggregate_version": n, "user_id": format!("user-{n}"), "order_id": format!("o-{n}"),
        "amount_cents": amount, "currency": "EUR", "items": 1
    })
    .to_string()
}

#[test]
fn topics_and_schemas_commands_are_idempotent() {
    let (topology, purchases, _) = write_topology("cli_admin");

    let (ok, out, err) = run(&mut sluice(&topology, &["topics", "apply", "--dry-run"]));
    assert!(ok, "{out}{err}");
    assert_eq!(out.matches("would create").count(), 2, "{out}");
    let (ok, out, err) = run(&mut sluice(&topology, &["topics", "apply"]));
    assert!(ok, "{out}{err}");
    assert!(out.contains(&purchases) && out.matches("created").count() == 2, "{out}");
    let (ok, out, err) = run(&mut sluice(&topology, &["topics", "apply"]));
    assert!(ok, "{out}{err}");
    assert!(out.contains("2 topics: 0 changed, 2 up to date"), "{out}");

    let (ok, out, err) = run(&mut sluice(&topology, &["schemas", "register"]));
    assert!(ok, "{out}{err}");
    assert!(out.contains("2 subjects: 2 new, 0 unchanged, 0 refused"), "{out}");
    let (ok, out, err) = run(&mut sluice(&topology, &["schemas", "register"]));
    assert!(ok, "{out}{err}");
    assert!(out.contains("2 subjects: 0 new, 2 unchanged, 0 refused"), "{out}");
    let (ok, out, err) = run(&mut sluice(&topology, &["schemas", "check"]));
    assert!(ok, "{out}{err}");
    assert_eq!(out.matches("identical").count(), 2, "{out}");

    // An incompatible schema change: `check` names the field and fails.
    let text = std::fs::read_to_string(&topology).expect("topology");
    let schema_dir = topology.parent().expect("dir");
    let mut schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/engagement/purchase_completed.avsc"),
        )
        .expect("schema"),
    )
    .expect("schema json");
    schema["fields"].as_array_mut().expect("fields").push(json!({"name": "coupon", "type": "string"}));
    let changed = schema_dir.join("purchase_v2.avsc");
    std::fs::write(&changed, schema.to_string()).expect("write schema");
    let original = text.lines().find(|l| l.contains("purchase_completed.avsc")).expect("schema line");
    let changed_topology = schema_dir.join("changed.toml");
    std::fs::write(&changed_topology, text.replace(original, &format!("schema = \"{}\"", changed.display())))
        .expect("write topology");
    let (ok, out, _) = run(&mut sluice(&changed_topology, &["schemas", "check"]));
    assert!(!ok, "an incompatible schema fails the check: {out}");
    assert!(
        out.contains("INCOMPATIBLE: the new schema cannot read events written with version 1: field \"coupon\" is new and has no default"),
        "{out}"
    );
}

#[test]
fn publish_reports_bad_lines_and_publishes_the_rest() {
    let (topology, purchases, users) = write_topology("cli_publish");
    let (ok, out, err) = run(&mut sluice(&topology, &["topics", "apply"]));
    assert!(ok, "{out}{err}");

    let dir = topology.parent().expect("dir");
    let file = dir.join("events.jsonl");
    let lines = [
        purchase(1, json!(1250)),
        purchase(2, json!(990)),
        purchase(3, json!("12")),
        json!({"event_type": "user.registered", "aggregate_id": "user-1", "aggregate_version": 1,
               "email": "one@example.com", "display_name": "One", "country": "DE"})
        .to_string(),
        String::new(),
        purchase(4, json!(100)),
        json!({"event_type": "engagement.refunded", "aggregate_id": "user-1"}).to_string(),
    ];
    std::fs::write(&file, lines.join("\n") + "\n").expect("write events");

    let (ok, out, err) = run(&mut sluice(&topology, &["publish", "--file", file.to_str().expect("utf-8 path")]));
    assert!(!ok, "rejected lines make the run fail");
    assert!(out.contains("published 4, rejected 2"), "{out}");
    assert!(out.contains("(1 blank lines ignored)"), "never a silent skip: {out}");
    assert!(err.contains(r#"line 3: $.amount_cents: expected long, found string "12""#), "{err}");
    assert!(err.contains(r#"line 7: unknown event type "engagement.refunded""#), "{err}");
    let row = out.lines().find(|l| l.starts_with("engagement.purchase_completed")).expect("per-type row");
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["engagement.purchase_completed", "3", "1", "0"]);
    assert_eq!((high_watermarks(&purchases), high_watermarks(&users)), (3, 1), "every good line, and only those");

    // --stop-on-error: the first bad line ends the run; the lines before it are published.
    let file = dir.join("stop.jsonl");
    std::fs::write(&file, [purchase(5, json!(1)), purchase(6, json!("x")), purchase(7, json!(1))].join("\n"))
        .expect("write events");
    let (ok, out, _) =
        run(&mut sluice(&topology, &["publish", "--stop-on-error", "--file", file.to_str().expect("utf-8 path")]));
    assert!(!ok);
    assert!(out.contains("stopped at line 2 (--stop-on-error)") && out.contains("published 1, rejected 1"), "{out}");
    assert_eq!(high_watermarks(&purchases), 4);

    // Standard input, with the event type given once for every line.
    let mut child = sluice(&topology, &["publish", "--event-type", "user.registered"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    for n in 0..500 {
        let line = json!({"aggregate_id": format!("user-{n}"), "aggregate_version": 1,
                          "email": format!("{n}@example.com"), "display_name": "N", "country": "FR"});
        writeln!(stdin, "{line}").expect("write stdin");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("published 500, rejected 0"), "{stdout}");
    assert_eq!(high_watermarks(&users), 501);
}

#[test]
fn publish_rejects_hostile_lines_one_by_one_and_publishes_the_rest() {
    let (topology, purchases, _) = write_topology("cli_hostile");
    let (ok, out, err) = run(&mut sluice(&topology, &["topics", "apply"]));
    assert!(ok, "{out}{err}");

    // Over the producer's 1 000 000-byte record limit (checked on the uncompressed record).
    let mut oversized: serde_json::Value = serde_json::from_str(&purchase(2, json!(1))).expect("json");
    oversized["order_id"] = json!("x".repeat(1_200_000));
    let mut long_id: serde_json::Value = serde_json::from_str(&purchase(4, json!(1))).expect("json");
    long_id["aggregate_id"] = json!("u".repeat(600_000));
    let duplicate =
        r#"{"event_type": "engagement.purchase_completed", "aggregate_id": "user-5", "aggregate_version": 5,
        "user_id": "user-5", "order_id": "o-5", "amount_cents": 1, "currency": "EUR", "items": 1, "amount_cents": "x"}"#
            .replace('\n', " ");
    let lines = [
        purchase(1, json!(100)),
        oversized.to_string(),
        purchase(3, json!(300)),
        long_id.to_string(),
        duplicate,
        "x".repeat(3000),
        purchase(6, json!(600)),
    ];
    let file = topology.parent().expect("dir").join("hostile.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").expect("write events");

    let path = file.to_str().expect("utf-8 path");
    let (ok, out, err) = run(&mut sluice(&topology, &["publish", "--max-line", "1MiB", "--file", path]));
    assert!(!ok, "rejected lines make the run fail");
    assert!(out.contains("published 3, rejected 4"), "every bad line counted, every good one published: {out}{err}");
    assert!(!out.contains("stopped"), "one bad line does not stop the run: {out}");
    // The 1.2 MB line is over --max-line here (skipped unread); below, it is over the record limit.
    assert!(err.contains("line 2: the line is 1200") && err.contains("(--max-line)"), "{err}");
    assert!(err.contains("line 4: $.aggregate_id: 600000 bytes long; at most 200 bytes"), "{err}");
    assert!(err.contains(r#"line 5: $.amount_cents: duplicate key "amount_cents""#), "{err}");
    assert!(err.contains("line 6: not JSON"), "{err}");
    assert_eq!(high_watermarks(&purchases), 3);

    // With the default --max-line the same oversized line reaches the publisher, which refuses it
    // as too large for Kafka, names the sizes, and goes on.
    let file = topology.parent().expect("dir").join("oversized.jsonl");
    std::fs::write(&file, [oversized.to_string(), purchase(7, json!(700))].join("\n")).expect("write events");
    let (ok, out, err) = run(&mut sluice(&topology, &["publish", "--file", file.to_str().expect("utf-8 path")]));
    assert!(!ok);
    assert!(out.contains("published 1, rejected 1") && !out.contains("stopped"), "{out}{err}");
    assert!(err.contains("line 1: the event is ") && err.contains("bytes as a Kafka record; topic"), "{err}");
    assert_eq!(high_watermarks(&purchases), 4);
}

/// The variables of the services `publish` does not use: unset in the test's environment.
const OTHER_SERVICES: &[&str] = &[
    "SLUICE_COUCHBASE_CONNSTR",
    "SLUICE_COUCHBASE_USERNAME",
    "SLUICE_COUCHBASE_PASSWORD",
    "SLUICE_COUCHBASE_BUCKET",
    "SLUICE_CLICKHOUSE_URL",
    "SLUICE_CLICKHOUSE_USER",
    "SLUICE_CLICKHOUSE_PASSWORD",
    "SLUICE_CLICKHOUSE_DATABASE",
    "SLUICE_CLICKHOUSE_COMPAT_URL",
];

#[test]
fn publish_needs_only_kafka_and_the_registry() {
    let (topology, purchases, _) = write_topology("cli_kafka_only");
    let dir = topology.parent().expect("dir");
    // An env file with Kafka and the registry only, and nothing of Couchbase or ClickHouse in the
    // process environment either.
    let rig = sluice_tests::connections();
    let env_file = dir.join("kafka-only.env");
    std::fs::write(
        &env_file,
        format!(
            "export SLUICE_KAFKA_BROKERS={}\nexport SLUICE_SCHEMA_REGISTRY_URL={}\n",
            rig.kafka.brokers, rig.registry.url
        ),
    )
    .expect("write env file");
    let only_kafka = |args: &[&str]| {
        let mut c = sluice(&topology, args);
        c.arg("--env-file").arg(&env_file).env_remove("SLUICE_ENV_FILE");
        for name in OTHER_SERVICES {
            c.env_remove(name);
        }
        c
    };

    for args in [&["topics", "apply"][..], &["schemas", "register"]] {
        let (ok, out, err) = run(&mut only_kafka(args));
        assert!(ok, "{args:?}: {out}{err}");
    }
    let file = dir.join("events.jsonl");
    std::fs::write(&file, purchase(1, json!(1250)) + "\n").expect("write events");
    // An invalid value of an unused service does not matter either.
    let mut publish = only_kafka(&["publish", "--file", file.to_str().expect("utf-8 path")]);
    let (ok, out, err) = run(publish.env("SLUICE_CLICKHOUSE_URL", "not a url"));
    assert!(ok, "{out}{err}");
    assert!(out.contains("published 1, rejected 0"), "{out}");
    assert!(!out.contains('\x1b') && !err.contains('\x1b'), "no colour codes off a terminal: {out:?}{err:?}");
    assert_eq!(high_watermarks(&purchases), 1);

    // A command that does use Couchbase names what is missing.
    let (ok, _, err) = run(&mut only_kafka(&["couchbase", "setup"]));
    assert!(!ok);
    assert!(err.contains("SLUICE_COUCHBASE_CONNSTR") && !err.contains("SLUICE_CLICKHOUSE_URL"), "{err}");
}
