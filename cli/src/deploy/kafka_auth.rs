//! How the pods and KEDA reach a secured Kafka, from `--kafka-sasl` and `--kafka-tls`.
//!
//! One Secret (`--kafka-secret-name`) serves both. Its keys are named as KEDA's kafka scaler names
//! its parameters (`username`, `password`, `ca`, `cert`, `key`): KEDA reads them through one
//! TriggerAuthentication that every ScaledObject references; the workers and the gateway get the
//! same Secret mounted and their `SLUICE_KAFKA_*_FILE` variables pointing into it (the user through
//! a `secretKeyRef`, sluice has no file variable for it). The mode — SASL mechanism, TLS or not —
//! is no secret: it comes from the options and is written both as the pods'
//! `SLUICE_KAFKA_SECURITY_PROTOCOL` / `SLUICE_KAFKA_SASL_MECHANISM` and as the triggers' `sasl` /
//! `tls`, so the scaler and the workers cannot disagree on it.

use anyhow::bail;
use serde_json::{Map, Value, json};

use super::K8sArgs;

/// Where the Kafka Secret is mounted.
const KAFKA_SECRETS_DIR: &str = "/var/run/secrets/sluice-kafka";

/// The SASL mechanism of `--kafka-sasl`. OAUTHBEARER is left out: sluice takes its settings from
/// a properties file, KEDA from parameters of its own (`oauthTokenEndpointUri`, `scopes`), so one
/// Secret could not serve both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum KafkaSasl {
    Plain,
    #[value(name = "scram-sha-256")]
    ScramSha256,
    #[value(name = "scram-sha-512")]
    ScramSha512,
}

impl KafkaSasl {
    /// librdkafka's name, what `SLUICE_KAFKA_SASL_MECHANISM` takes.
    fn mechanism(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The kafka scaler's `sasl` value.
    fn keda(self) -> &'static str {
        match self {
            Self::Plain => "plaintext",
            Self::ScramSha256 => "scram_sha256",
            Self::ScramSha512 => "scram_sha512",
        }
    }
}

/// The TLS of `--kafka-tls`: whom the brokers' certificate is checked against, and whether the
/// client shows one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum KafkaTls {
    /// No TLS (with `--kafka-sasl`: SASL_PLAINTEXT).
    None,
    /// TLS, the brokers' certificate checked against the system's CAs.
    System,
    /// TLS, checked against the Secret's `ca` (PEM).
    Ca,
    /// Mutual TLS: `ca`, and the client certificate `cert` with its unencrypted key `key` (PEM).
    Mutual,
}

/// The resolved options: what the pods, the triggers and the TriggerAuthentication say.
#[derive(Debug, Clone)]
pub(super) struct KafkaAuth {
    sasl: Option<KafkaSasl>,
    tls: KafkaTls,
    secret_name: String,
    /// The TriggerAuthentication's name.
    name: String,
    namespace: Option<String>,
}

impl KafkaAuth {
    /// `None` for a plaintext Kafka (no option given). Without `--kafka-tls`, SASL implies TLS
    /// with the system's CAs, as sluice itself reads credentials given without a protocol.
    pub(super) fn from_args(args: &K8sArgs) -> anyhow::Result<Option<Self>> {
        let tls = match (args.kafka_sasl, args.kafka_tls) {
            (None, None | Some(KafkaTls::None)) => return Ok(None),
            (_, Some(tls)) => tls,
            (Some(_), None) => KafkaTls::System,
        };
        let auth = Self {
            sasl: args.kafka_sasl,
            tls,
            secret_name: args.kafka_secret_name.clone(),
            name: format!("{}-kafka", args.name_prefix),
            namespace: args.namespace.clone(),
        };
        // The same variable set twice would leave the pod's value to the order of its lists.
        let owned: Vec<String> = auth.pod_env().iter().filter_map(|e| e["name"].as_str().map(str::to_owned)).collect();
        let base = |v: &str| v.strip_suffix("_FILE").unwrap_or(v).to_owned();
        let given = args.env.iter().map(|(k, _)| ("--env", k)).chain(args.secrets.iter().map(|v| ("--secret", v)));
        for (option, var) in given {
            if owned.iter().any(|o| base(o) == base(var)) {
                bail!("{option} {var}: --kafka-sasl/--kafka-tls set it (from the Secret {})", auth.secret_name);
            }
        }
        Ok(Some(auth))
    }

    /// The Secret's keys the pods read as files, each with its variable.
    fn files(&self) -> Vec<(&'static str, &'static str)> {
        let mut files = Vec::new();
        if self.sasl.is_some() {
            files.push(("password", "SLUICE_KAFKA_SASL_PASSWORD_FILE"));
        }
        if matches!(self.tls, KafkaTls::Ca | KafkaTls::Mutual) {
            files.push(("ca", "SLUICE_KAFKA_TLS_CA_FILE"));
        }
        if self.tls == KafkaTls::Mutual {
            files.extend([("cert", "SLUICE_KAFKA_TLS_CERT_FILE"), ("key", "SLUICE_KAFKA_TLS_KEY_FILE")]);
        }
        files
    }

    /// The Secret's keys in use, each the kafka scaler's parameter of that name.
    fn secret_keys(&self) -> Vec<&'static str> {
        let user = self.sasl.map(|_| "username");
        user.into_iter().chain(self.files().into_iter().map(|(key, _)| key)).collect()
    }

    /// The workers' and the gateway's `SLUICE_KAFKA_*`: the mode as values, the credentials as
    /// files of the mounted Secret (the user as a reference: it has no file variable).
    pub(super) fn pod_env(&self) -> Vec<Value> {
        let protocol = match (self.sasl.is_some(), self.tls != KafkaTls::None) {
            (true, true) => "sasl_ssl",
            (true, false) => "sasl_plaintext",
            (false, _) => "ssl",
        };
        let mut env = vec![json!({"name": "SLUICE_KAFKA_SECURITY_PROTOCOL", "value": protocol})];
        if let Some(sasl) = self.sasl {
            env.push(json!({"name": "SLUICE_KAFKA_SASL_MECHANISM", "value": sasl.mechanism()}));
            let from = json!({"secretKeyRef": {"name": self.secret_name, "key": "username"}});
            env.push(json!({"name": "SLUICE_KAFKA_SASL_USERNAME", "valueFrom": from}));
        }
        for (key, var) in self.files() {
            env.push(json!({"name": var, "value": format!("{KAFKA_SECRETS_DIR}/{key}")}));
        }
        env
    }

    /// The Secret as a volume and its read-only mount, when the pods read a file of it.
    pub(super) fn volume(&self) -> Option<(Value, Value)> {
        if self.files().is_empty() {
            return None;
        }
        Some((
            json!({"name": "kafka-secrets", "secret": {"secretName": self.secret_name, "defaultMode": 0o440}}),
            json!({"name": "kafka-secrets", "mountPath": KAFKA_SECRETS_DIR, "readOnly": true}),
        ))
    }

    /// The mode in a kafka trigger's metadata; the credentials come from [`Self::reference`].
    pub(super) fn trigger_metadata(&self, metadata: &mut Map<String, Value>) {
        if let Some(sasl) = self.sasl {
            metadata.insert("sasl".to_owned(), json!(sasl.keda()));
        }
        metadata.insert("tls".to_owned(), json!(if self.tls == KafkaTls::None { "disable" } else { "enable" }));
    }

    /// A trigger's `authenticationRef`, when there is a TriggerAuthentication.
    pub(super) fn reference(&self) -> Option<Value> {
        (!self.secret_keys().is_empty()).then(|| json!({"name": self.name, "kind": "TriggerAuthentication"}))
    }

    /// The one TriggerAuthentication every ScaledObject shares: each parameter from the Secret's
    /// key of the same name. None when TLS against the system's CAs is all (nothing secret).
    pub(super) fn trigger_authentication(&self) -> Option<Value> {
        let keys = self.secret_keys();
        if keys.is_empty() {
            return None;
        }
        let refs: Vec<Value> =
            keys.iter().map(|k| json!({"parameter": k, "name": self.secret_name, "key": k})).collect();
        let labels = json!({"app.kubernetes.io/name": "sluice"});
        Some(json!({
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "TriggerAuthentication",
            "metadata": super::k8s::metadata(&self.name, self.namespace.as_deref(), &labels),
            "spec": {"secretTargetRef": refs},
        }))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: K8sArgs,
    }

    fn auth(argv: &[&str]) -> anyhow::Result<Option<KafkaAuth>> {
        let cli = Cli::try_parse_from(std::iter::once("k8s").chain(argv.iter().copied()))?;
        KafkaAuth::from_args(&cli.args)
    }

    fn env_names(auth: &KafkaAuth) -> Vec<String> {
        auth.pod_env().iter().map(|e| e["name"].as_str().unwrap_or_default().to_owned()).collect()
    }

    #[test]
    fn plaintext_without_options_and_sasl_implies_tls_with_system_cas() {
        assert!(auth(&[]).expect("parse").is_none());
        assert!(auth(&["--kafka-tls", "none"]).expect("parse").is_none());
        let a = auth(&["--kafka-sasl", "scram-sha-512"]).expect("parse").expect("auth");
        assert_eq!(a.pod_env()[0]["value"], "sasl_ssl");
        assert_eq!(a.secret_keys(), ["username", "password"]);
        let mut m = Map::new();
        a.trigger_metadata(&mut m);
        assert_eq!(Value::Object(m), json!({"sasl": "scram_sha512", "tls": "enable"}));
    }

    #[test]
    fn each_secret_key_feeds_keda_and_the_pods_alike() {
        let a = auth(&["--kafka-sasl", "plain", "--kafka-tls", "mutual", "--kafka-secret-name", "kc"])
            .expect("parse")
            .expect("auth");
        assert_eq!(
            env_names(&a),
            [
                "SLUICE_KAFKA_SECURITY_PROTOCOL",
                "SLUICE_KAFKA_SASL_MECHANISM",
                "SLUICE_KAFKA_SASL_USERNAME",
                "SLUICE_KAFKA_SASL_PASSWORD_FILE",
                "SLUICE_KAFKA_TLS_CA_FILE",
                "SLUICE_KAFKA_TLS_CERT_FILE",
                "SLUICE_KAFKA_TLS_KEY_FILE",
            ]
        );
        assert_eq!(a.pod_env()[2]["valueFrom"], json!({"secretKeyRef": {"name": "kc", "key": "username"}}));
        assert_eq!(a.pod_env()[6]["value"], "/var/run/secrets/sluice-kafka/key");
        let ta = a.trigger_authentication().expect("secret keys");
        let refs = ta["spec"]["secretTargetRef"].as_array().expect("refs");
        assert_eq!(refs.len(), 5);
        assert!(refs.iter().all(|r| r["name"] == "kc" && r["parameter"] == r["key"]), "{refs:?}");
        assert_eq!(a.reference(), Some(json!({"name": "sluice-kafka", "kind": "TriggerAuthentication"})));
    }

    #[test]
    fn tls_with_system_cas_needs_no_secret_and_sasl_may_go_without_tls() {
        let a = auth(&["--kafka-tls", "system"]).expect("parse").expect("auth");
        assert_eq!(env_names(&a), ["SLUICE_KAFKA_SECURITY_PROTOCOL"]);
        assert!(a.trigger_authentication().is_none() && a.reference().is_none() && a.volume().is_none());
        let a = auth(&["--kafka-sasl", "scram-sha-256", "--kafka-tls", "none"]).expect("parse").expect("auth");
        assert_eq!(a.pod_env()[0]["value"], "sasl_plaintext");
        let mut m = Map::new();
        a.trigger_metadata(&mut m);
        assert_eq!(Value::Object(m), json!({"sasl": "scram_sha256", "tls": "disable"}));
    }

    #[test]
    fn a_variable_the_options_set_may_not_be_given_again() {
        let err = auth(&["--kafka-sasl", "plain", "--secret", "SLUICE_KAFKA_SASL_PASSWORD"]).expect_err("twice");
        assert!(err.to_string().starts_with("--secret SLUICE_KAFKA_SASL_PASSWORD: --kafka-sasl"), "{err}");
        let err = auth(&["--kafka-tls", "ca", "--env", "SLUICE_KAFKA_TLS_CA_FILE=/ca.pem"]).expect_err("twice");
        assert!(err.to_string().starts_with("--env SLUICE_KAFKA_TLS_CA_FILE"), "{err}");
        // Brokers and other variables are still the user's.
        assert!(auth(&["--kafka-tls", "ca", "--env", "SLUICE_KAFKA_BROKERS=k:9094"]).expect("brokers").is_some());
    }
}
