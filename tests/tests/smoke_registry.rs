//! Smoke test of the schema registry through schema_registry_converter: register an Avro schema,
//! read it back by id, and round-trip a record in the Confluent wire format.

use apache_avro::Schema;
use apache_avro::types::Value;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::{SrSettings, get_schema_by_id, post_schema};
use schema_registry_converter::schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema};
use sluice_core::framing::unframe;
use sluice_tests::{connections, unique, within};

const SCHEMA: &str = r#"{
  "type": "record", "name": "Ping", "namespace": "sluice.smoke",
  "fields": [
    {"name": "id", "type": "string"},
    {"name": "n", "type": "long"},
    {"name": "note", "type": ["null", "string"], "default": null}
  ]
}"#;

#[tokio::test]
async fn register_read_back_and_roundtrip_a_record() {
    let sr = SrSettings::new(connections().registry.url);
    let topic = unique("smoke_registry");
    let subject = format!("{topic}-value");

    let supplied = SuppliedSchema::new(Some("sluice.smoke.Ping".into()), SchemaType::Avro, SCHEMA.into());
    let registered = within("register schema", 30, post_schema(&sr, subject.clone(), supplied))
        .await
        .unwrap_or_else(|e| panic!("register {subject}: {e}"));
    let by_id = within("get schema by id", 30, get_schema_by_id(registered.id, &sr))
        .await
        .unwrap_or_else(|e| panic!("schema {}: {e}", registered.id));
    let canonical = |s: &str| Schema::parse_str(s).expect("valid avro").canonical_form();
    assert_eq!(canonical(&by_id.schema), canonical(SCHEMA), "the registry returns what we registered");

    let encoder = AvroEncoder::new(sr.clone());
    let bytes = within(
        "encode",
        30,
        encoder.encode(
            vec![
                ("id", Value::String("p-1".into())),
                ("n", Value::Long(42)),
                ("note", Value::Union(1, Box::new(Value::String("hi".into())))),
            ],
            SubjectNameStrategy::TopicNameStrategy(topic.clone(), false),
        ),
    )
    .await
    .expect("encode");
    let framed = unframe(&bytes).expect("Confluent framing");
    assert_eq!(framed.schema_id, registered.id, "the frame carries the registered id");

    let decoded = within("decode", 30, AvroDecoder::new(sr).decode(Some(&bytes))).await.expect("decode");
    assert_eq!(
        decoded.value,
        Value::Record(vec![
            ("id".into(), Value::String("p-1".into())),
            ("n".into(), Value::Long(42)),
            ("note".into(), Value::Union(1, Box::new(Value::String("hi".into())))),
        ])
    );
}
