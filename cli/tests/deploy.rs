//! The deployment artefacts, checked with the tools that will read them, without a cluster:
//!
//! - the manifests of `sluice deploy k8s` (every autoscaler choice, plaintext and secured Kafka)
//!   decoded strictly by Kubernetes', KEDA's and the Prometheus operator's Go types
//!   (`deploy/validate`), and the committed `deploy/k8s/sluice.yaml` equal to what the command
//!   generates; with a secured Kafka, one TriggerAuthentication every ScaledObject references, the
//!   pods reading the same Secret, and no secret value written;
//! - the alert rules checked and unit-tested by `promtool` (each alert fires and resolves);
//! - `docker-compose.yml` resolved by `docker-compose config`.
//!
//! Go, promtool and docker-compose are installed by `dev/bootstrap`; a missing one fails the
//! test with that hint, never skips it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sluice_tests::unique;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a tool; a tool that is not installed fails the test naming who installs it.
fn tool(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {:?} ({e}): dev/bootstrap installs it (Go, promtool, docker-compose)", cmd.get_program())
    })
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `sluice deploy k8s ARGS` on the repository's topology, written to `out`.
fn generate(out: &Path, args: &[&str]) {
    generate_with_env(out, args, &[]);
}

/// The same with variables set in the generator's environment.
fn generate_with_env(out: &Path, args: &[&str], env: &[(&str, &str)]) {
    let status = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(root())
        .args(["--topology", "topology.toml", "deploy", "k8s", "--output"])
        .arg(out)
        .args(args)
        .envs(env.iter().copied())
        .status()
        .expect("run sluice deploy k8s");
    assert!(status.success(), "sluice deploy k8s {args:?} failed");
}

/// `go run ./deploy/validate ARGS`: the strict decoder.
fn validate(args: &[&Path]) -> Output {
    tool(Command::new("go").current_dir(root().join("deploy/validate")).args(["run", "."]).args(args))
}

fn documents(path: &Path) -> usize {
    std::fs::read_to_string(path).expect("read manifests").lines().filter(|l| *l == "---").count()
}

#[test]
fn every_generated_manifest_decodes_strictly_with_the_kubernetes_types() {
    let dir = std::env::temp_dir().join(unique("k8s"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let variants: [(&str, &[&str]); 6] = [
        ("keda", &[]),
        ("hpa", &["--autoscaler", "hpa", "--namespace", "pipelines"]),
        ("fixed", &["--autoscaler", "none", "--replicas", "3", "--drain-deadline", "2m"]),
        (
            "zero",
            &[
                "--scale-to-zero",
                "--env",
                "SLUICE_KAFKA_BROKERS=kafka-0.kafka:9092",
                "--secret",
                "SLUICE_KAFKA_SASL_PASSWORD",
            ],
        ),
        ("keda-scram", &["--kafka-sasl", "scram-sha-512", "--kafka-tls", "ca", "--namespace", "pipelines"]),
        ("hpa-mtls", &["--autoscaler", "hpa", "--kafka-tls", "mutual"]),
    ];
    let mut files = Vec::new();
    for (name, args) in variants {
        let file = dir.join(format!("{name}.yaml"));
        generate(&file, args);
        files.push(file);
    }
    let mut inputs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let committed = root().join("deploy/k8s/sluice.yaml");
    inputs.push(&committed);
    let out = validate(&inputs);
    let printed = text(&out);
    assert!(out.status.success(), "the manifests do not decode strictly:\n{printed}");
    let expected: usize = inputs.iter().map(|f| documents(f)).sum();
    let decoded = printed.lines().filter(|l| l.starts_with("ok ")).count();
    assert_eq!(decoded, expected, "every document decoded once:\n{printed}");
    for kind in [
        "ScaledObject/",
        "TriggerAuthentication/sluice-kafka",
        "HorizontalPodAutoscaler/sluice-worker-",
        "PodDisruptionBudget/",
        "PodMonitor/",
    ] {
        assert!(printed.contains(kind), "{kind} generated and decoded:\n{printed}");
    }
    // The committed manifests are the generator's output for the repository's topology.
    assert_eq!(
        std::fs::read_to_string(&files[0]).expect("generated"),
        std::fs::read_to_string(&committed).expect("committed"),
        "deploy/k8s/sluice.yaml is stale: run `cargo run -p sluice -- deploy k8s -o deploy/k8s/sluice.yaml`"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The documents of a generated stream as (kind, text) pairs.
fn kinds(stream: &str) -> Vec<(String, String)> {
    stream
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| {
            let kind = d.lines().find_map(|l| l.strip_prefix("kind: ")).unwrap_or_default();
            (kind.to_owned(), d.to_owned())
        })
        .collect()
}

/// There are `count` documents, and each holds every one of `lines`.
fn all_hold(docs: &[&str], count: usize, lines: &[&str]) {
    assert_eq!(docs.len(), count, "{docs:#?}");
    for doc in docs {
        for line in lines {
            assert!(doc.contains(line), "{line:?} in\n{doc}");
        }
    }
}

#[test]
fn a_secured_kafka_gets_one_trigger_authentication_that_every_scaled_object_references() {
    let dir = std::env::temp_dir().join(unique("k8s-auth"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Secrets in the generator's own environment must not leak into what it writes.
    let secret = unique("secret-value");
    let env = [
        ("SLUICE_KAFKA_SASL_USERNAME", secret.as_str()),
        ("SLUICE_KAFKA_SASL_PASSWORD", secret.as_str()),
        ("SLUICE_COUCHBASE_PASSWORD", secret.as_str()),
    ];
    let keda = dir.join("keda.yaml");
    let args = [
        "--kafka-sasl",
        "scram-sha-512",
        "--kafka-tls",
        "mutual",
        "--kafka-secret-name",
        "kafka-creds",
        "--env",
        "SLUICE_KAFKA_BROKERS=kafka-0.kafka:9094",
    ];
    generate_with_env(&keda, &args, &env);
    let hpa = dir.join("hpa.yaml");
    generate_with_env(&hpa, &["--autoscaler", "hpa", "--kafka-sasl", "plain"], &env);
    let out = validate(&[&keda, &hpa]);
    assert!(out.status.success(), "the manifests do not decode strictly:\n{}", text(&out));

    let stream = std::fs::read_to_string(&keda).expect("generated");
    assert!(!stream.contains(&secret), "a secret value in the manifests");
    let docs = kinds(&stream);
    let of = |kind: &str| docs.iter().filter(|(k, _)| k == kind).map(|(_, d)| d.as_str()).collect::<Vec<_>>();
    assert!(of("Secret").is_empty(), "the Secret is the user's, never written");
    // One TriggerAuthentication, each KEDA parameter from the Secret's key of its name.
    let [auth] = of("TriggerAuthentication")[..] else { panic!("one TriggerAuthentication:\n{stream}") };
    assert!(auth.contains("  name: sluice-kafka\n"), "{auth}");
    for key in ["username", "password", "ca", "cert", "key"] {
        let r = format!("- parameter: {key}\n      name: kafka-creds\n      key: {key}\n");
        assert!(auth.contains(&r), "{key} from the Secret:\n{auth}");
    }
    // Every ScaledObject's trigger uses it, with the mode the pods use.
    let trigger = [
        "bootstrapServers: kafka-0.kafka:9094\n",
        "sasl: scram_sha512\n",
        "tls: enable\n",
        "authenticationRef:\n        name: sluice-kafka\n        kind: TriggerAuthentication\n",
    ];
    all_hold(&of("ScaledObject"), 3, &trigger);
    // The workers and the gateway read the same Secret.
    let pod = [
        "- name: SLUICE_KAFKA_SECURITY_PROTOCOL\n              value: sasl_ssl\n",
        "- name: SLUICE_KAFKA_SASL_MECHANISM\n              value: SCRAM-SHA-512\n",
        "secretKeyRef:\n                  name: kafka-creds\n                  key: username\n",
        "value: /var/run/secrets/sluice-kafka/password\n",
        "- name: SLUICE_KAFKA_TLS_KEY_FILE\n              value: /var/run/secrets/sluice-kafka/key\n",
        "secret:\n            secretName: kafka-creds\n",
    ];
    all_hold(&of("Deployment"), 4, &pod);

    // The HPA reads Prometheus: no TriggerAuthentication, but the pods still reach Kafka secured.
    let stream = std::fs::read_to_string(&hpa).expect("generated");
    assert!(!stream.contains(&secret), "a secret value in the manifests");
    assert!(!stream.contains("TriggerAuthentication") && !stream.contains("ScaledObject"), "{stream}");
    let docs = kinds(&stream);
    assert!(docs.iter().filter(|(k, _)| k == "Deployment").all(|(_, d)| d.contains("value: PLAIN\n")), "{stream}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_misspelled_or_unknown_field_fails_the_validation() {
    let good = std::fs::read_to_string(root().join("deploy/k8s/sluice.yaml")).expect("committed manifests");
    let dir = std::env::temp_dir().join(unique("k8s-bad"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // A case slip (the JSON decoder of Go's standard library would accept it), an unknown KEDA
    // field, a misplaced probe field.
    for (i, (from, to)) in [
        ("containerPort: 9464", "containerport: 9464"),
        ("maxReplicaCount:", "maxReplicas:"),
        ("periodSeconds: 5", "periodSecond: 5"),
    ]
    .into_iter()
    .enumerate()
    {
        assert!(good.contains(from), "{from} in the manifests");
        let file = dir.join(format!("bad-{i}.yaml"));
        std::fs::write(&file, good.replacen(from, to, 1)).expect("write");
        let out = validate(&[&file]);
        let field = to.trim_end_matches(|c: char| c == ':' || c == ' ' || c.is_ascii_digit());
        assert!(!out.status.success(), "{to:?} accepted");
        assert!(text(&out).contains("unknown field") && text(&out).contains(field), "{}", text(&out));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn alert_rules_pass_promtool_and_every_alert_fires_and_resolves_in_its_unit_tests() {
    let dir = root().join("deploy/prometheus");
    let check = tool(Command::new("promtool").current_dir(&dir).args(["check", "rules", "sluice-rules.yml"]));
    assert!(check.status.success() && text(&check).contains("SUCCESS: 9 rules found"), "{}", text(&check));
    let test = tool(Command::new("promtool").current_dir(&dir).args(["test", "rules", "sluice-rules.test.yml"]));
    assert!(test.status.success() && text(&test).contains("SUCCESS"), "{}", text(&test));
    // Every alert has a case where it fires (exp_alerts listed) and one where it does not.
    let rules = std::fs::read_to_string(dir.join("sluice-rules.yml")).expect("rules");
    let tests = std::fs::read_to_string(dir.join("sluice-rules.test.yml")).expect("tests");
    let runbook = std::fs::read_to_string(dir.join("runbook.md")).expect("runbook");
    let alerts: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert_eq!(alerts.len(), 9, "{alerts:?}");
    for alert in alerts {
        let silent = format!("alertname: {alert}, exp_alerts: []");
        let firing = format!("alertname: {alert}\n        exp_alerts:\n          - exp_labels");
        assert!(
            tests.contains(&silent) && tests.contains(&firing),
            "{alert}: a test that fires it and one that does not"
        );
        assert!(runbook.contains(&format!("## {alert}\n")), "{alert}: a runbook section");
        assert!(rules.contains(&format!("runbook.md#{}\"", alert.to_ascii_lowercase())), "{alert}: links its runbook");
    }
    // The operator's PrometheusRule holds the same groups, and decodes strictly.
    let same = validate(&[Path::new("-same-rules"), &dir.join("sluice-rules.yml"), &dir.join("prometheusrule.yaml")]);
    assert!(same.status.success(), "{}", text(&same));
}

#[test]
fn docker_compose_file_resolves_and_runs_every_projection_like_the_manifests() {
    let out = tool(Command::new("docker-compose").current_dir(root()).args(["-f", "docker-compose.yml", "config"]));
    let resolved = text(&out);
    assert!(out.status.success(), "docker-compose config refuses docker-compose.yml:\n{resolved}");
    // A worker per projection of the repository's topology, on the manifests' variables.
    for projection in ["user_state", "session_state", "analytics"] {
        assert!(
            resolved.contains(&format!("- --projection\n    - {projection}\n")),
            "a worker of {projection}:\n{resolved}"
        );
    }
    assert_eq!(resolved.matches("SLUICE_METRICS_ADDR: 0.0.0.0:9464").count(), 3, "{resolved}");
    let manifests = std::fs::read_to_string(root().join("deploy/k8s/sluice.yaml")).expect("manifests");
    for shared in ["0.0.0.0:9464", "SLUICE_LOG", "--drain-deadline", "0.0.0.0:8080"] {
        assert!(resolved.contains(shared) && manifests.contains(shared), "{shared} in both");
    }
}
