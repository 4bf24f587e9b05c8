//! Smoke test of the Kafka broker through rdkafka: produce, consume in a group, commit, and read
//! back the committed offset and the high watermark.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_tests::{connections, unique, within};

const N: i64 = 20;

#[tokio::test]
async fn produce_consume_commit_and_read_offsets() {
    let brokers = connections().kafka.brokers;
    let topic = unique("smoke_kafka");
    let group = unique("smoke_group");

    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("admin client");
    let created = within(
        "create topic",
        30,
        admin.create_topics(&[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))], &AdminOptions::new()),
    )
    .await
    .expect("create_topics request");
    assert!(created.iter().all(Result::is_ok), "create topic {topic}: {created:?}");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer");
    for i in 0..N {
        let payload = format!("event-{i}");
        let key = format!("k{}", i % 3);
        let delivery = within(
            "delivery report",
            30,
            producer.send(FutureRecord::to(&topic).key(&key).payload(&payload), Duration::from_secs(10)),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("produce {i}: {e}"));
        assert_eq!(
            (delivery.partition, delivery.offset),
            (0, i),
            "offsets are dense on a fresh single-partition topic"
        );
    }

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut seen = Vec::new();
    while (seen.len() as i64) < N {
        let msg = within("consume", 60, consumer.recv()).await.expect("kafka message");
        let text = std::str::from_utf8(msg.payload().expect("payload")).expect("utf8").to_owned();
        seen.push((msg.offset(), text));
        consumer.store_offset_from_message(&msg).expect("store offset");
    }
    let expected: Vec<_> = (0..N).map(|i| (i, format!("event-{i}"))).collect();
    assert_eq!(seen, expected, "consumed in order, each once");
    consumer.commit_consumer_state(CommitMode::Sync).expect("commit");

    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&topic, 0);
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
    let committed = committed.find_partition(&topic, 0).expect("partition 0").offset();
    assert_eq!(committed, Offset::Offset(N), "the committed offset is the next one to read");
    let (low, high) = consumer.fetch_watermarks(&topic, 0, Duration::from_secs(10)).expect("watermarks");
    assert_eq!((low, high), (0, N));

    drop(consumer);
    let deleted = within("delete topic", 30, admin.delete_topics(&[&topic], &AdminOptions::new()))
        .await
        .expect("delete_topics request");
    assert!(deleted.iter().all(Result::is_ok), "delete topic: {deleted:?}");
}
