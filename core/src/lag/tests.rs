//! Tests of the lag decisions: states and their hysteresis, snapshots, intake decisions and the
//! token bucket, with the time passed in.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::topology::HumanDuration;
use crate::topology::{BackpressureConfig, Topology};

use BackpressureState::{Hard, Normal, Soft};

fn cfg(soft: Option<u64>, hard: Option<u64>, soft_age: Option<u64>, hard_age: Option<u64>) -> BackpressureConfig {
    BackpressureConfig {
        soft_lag: soft,
        hard_lag: hard,
        soft_lag_age: soft_age.map(HumanDuration::from_millis),
        hard_lag_age: hard_age.map(HumanDuration::from_millis),
        critical_events: Vec::new(),
    }
}

fn lag(messages: u64, age_ms: Option<u64>) -> Lag {
    Lag { messages, age: age_ms.map(Duration::from_millis) }
}

fn offsets(low: i64, high: i64, committed: Option<i64>, ts: Option<i64>) -> PartitionOffsets {
    PartitionOffsets { topic: "t".into(), partition: 0, low, high, committed, oldest_timestamp_ms: ts }
}

fn projection(state: BackpressureState, l: Lag, c: &BackpressureConfig) -> ProjectionLag {
    let (state, trigger) = next_state(state, l, c);
    ProjectionLag {
        group: "g".into(),
        state,
        trigger,
        lag_messages: l.messages,
        age: l.age,
        partitions: Vec::new(),
        error: None,
    }
}

#[test]
fn lag_per_partition() {
    // Never committed: everything retained is behind.
    let p = PartitionLag::compute(&offsets(5, 15, None, Some(1_000)), 4_000);
    assert_eq!((p.lag_messages, p.age), (10, Some(Duration::from_secs(3))));
    // Committed: high − committed; the age is that of the record at the committed offset.
    let p = PartitionLag::compute(&offsets(5, 15, Some(12), Some(3_500)), 4_000);
    assert_eq!((p.lag_messages, p.age), (3, Some(Duration::from_millis(500))));
    // Caught up: no lag, zero age whatever the timestamp says.
    let p = PartitionLag::compute(&offsets(5, 15, Some(15), None), 4_000);
    assert_eq!((p.lag_messages, p.age), (0, Some(Duration::ZERO)));
    // Committed below the low watermark (retention deleted records): what is retained.
    assert_eq!(offsets(5, 15, Some(2), None).lag_messages(), 10);
    assert_eq!(offsets(5, 15, Some(2), None).position(), 5);
    // Committed past the high watermark (a recreated topic): nothing behind.
    assert_eq!(offsets(0, 3, Some(9), None).lag_messages(), 0);
    // A timestamp in the future (skew) is zero age; an unknown one is unknown.
    assert_eq!(PartitionLag::compute(&offsets(0, 3, None, Some(9_000)), 4_000).age, Some(Duration::ZERO));
    assert_eq!(PartitionLag::compute(&offsets(0, 3, None, None), 4_000).age, None);
}

#[test]
fn aggregates_sum_and_max() {
    let parts = [
        PartitionLag::compute(&offsets(0, 10, Some(4), Some(1_000)), 5_000),
        PartitionLag::compute(&offsets(0, 7, None, Some(3_000)), 5_000),
        PartitionLag::compute(&offsets(0, 7, Some(7), None), 5_000),
    ];
    assert_eq!(Lag::aggregate(&parts), lag(13, Some(4_000)));
    assert_eq!(Lag::aggregate(&[]), lag(0, Some(0)));
    let unknown = [PartitionLag::compute(&offsets(0, 7, None, None), 5_000)];
    assert_eq!(Lag::aggregate(&unknown), lag(7, None));
}

#[test]
fn states_with_hysteresis() {
    let c = cfg(Some(100), Some(1_000), None, None);
    assert_eq!(next_state(Normal, lag(99, None), &c).0, Normal);
    let (s, t) = next_state(Normal, lag(100, None), &c);
    assert_eq!((s, t.map(|t| (t.threshold, t.holding))), (Soft, Some((Threshold::SoftLag, false))));
    assert_eq!(next_state(Normal, lag(1_000, None), &c).0, Hard);
    // Hard holds down to 80 % of hard_lag, then Soft (soft still fires), …
    let (s, t) = next_state(Hard, lag(800, None), &c);
    assert_eq!((s, t.map(|t| t.holding)), (Hard, Some(true)));
    assert_eq!(next_state(Hard, lag(799, None), &c).0, Soft);
    // … Soft holds down to 80 % of soft_lag, then Normal.
    assert_eq!(next_state(Soft, lag(80, None), &c).0, Soft);
    assert_eq!(next_state(Soft, lag(79, None), &c).0, Normal);
    // From Hard straight below every low-water mark: Normal.
    assert_eq!(next_state(Hard, lag(0, Some(0)), &c), (Normal, None));
    // Soft does not hold Hard.
    assert_eq!(next_state(Soft, lag(900, None), &c).0, Soft);
}

#[test]
fn age_thresholds_and_unknown_age() {
    let c = cfg(None, None, Some(30_000), Some(300_000));
    assert_eq!(next_state(Normal, lag(1_000_000, None), &c).0, Normal, "no message thresholds");
    assert_eq!(next_state(Normal, lag(1, Some(29_999)), &c).0, Normal);
    let (s, t) = next_state(Normal, lag(1, Some(45_000)), &c);
    assert_eq!(s, Soft);
    assert_eq!(t.map(|t| t.to_string()), Some("oldest unprocessed event 45.0s old ≥ soft_lag_age 30.0s".into()));
    assert_eq!(next_state(Normal, lag(1, Some(300_000)), &c).0, Hard);
    // An unknown age holds nothing: it cannot be shown to be above the mark.
    assert_eq!(next_state(Hard, lag(1, None), &c).0, Normal);
}

#[test]
fn reasons_name_the_most_exceeded_threshold() {
    let c = cfg(Some(100), Some(1_000), Some(10_000), Some(60_000));
    let (_, t) = next_state(Normal, lag(150, Some(59_000)), &c);
    assert_eq!(t.map(|t| t.threshold), Some(Threshold::SoftLagAge), "59 s / 10 s beats 150 / 100");
    let (_, t) = next_state(Normal, lag(5_000, Some(70_000)), &c);
    assert_eq!(t.map(|t| t.to_string()), Some("lag 5000 messages ≥ hard_lag 1000".into()));
    let (_, t) = next_state(Hard, lag(900, Some(0)), &c);
    assert_eq!(t.map(|t| t.to_string()), Some("lag 900 messages, still at or above 80% of hard_lag 1000".into()));
}

#[test]
fn decisions() {
    let policy = IntakePolicy::default();
    let c = cfg(Some(100), Some(1_000), None, None);
    assert_eq!(
        IntakeDecision::for_projection("p", &projection(Normal, lag(5, None), &c), &c, false, &policy),
        IntakeDecision::Allow
    );

    let at_soft = IntakeDecision::for_projection("p", &projection(Normal, lag(100, None), &c), &c, false, &policy);
    let IntakeDecision::Slow { pressure, rate, delay, reason } = &at_soft else { panic!("{at_soft:?}") };
    assert_eq!((*pressure, *rate, *delay), (0.0, 5_000.0, Duration::from_millis(10)));
    assert_eq!(reason.to_string(), "projection p is soft (lag 100 messages ≥ soft_lag 100)");
    assert_eq!(reason.threshold(), "soft_lag");

    let mid = IntakeDecision::for_projection("p", &projection(Normal, lag(550, None), &c), &c, false, &policy);
    let IntakeDecision::Slow { pressure, rate, .. } = mid else { panic!("{mid:?}") };
    assert!((pressure - 0.5).abs() < 1e-9 && (rate - (5_000.0f64 * 100.0).sqrt()).abs() < 1e-6, "{rate}");

    let hard = IntakeDecision::for_projection("p", &projection(Normal, lag(3_500, None), &c), &c, false, &policy);
    let IntakeDecision::Refuse { retry_after, .. } = &hard else { panic!("{hard:?}") };
    assert_eq!(*retry_after, Duration::from_secs(4), "ceil(3.5 × 1 s)");
    let huge = IntakeDecision::for_projection("p", &projection(Normal, lag(u64::MAX, None), &c), &c, false, &policy);
    assert_eq!(huge.severity(), (2, 60.0), "capped at retry_after_max");

    let critical = IntakeDecision::for_projection("p", &projection(Hard, lag(3_500, None), &c), &c, true, &policy);
    let IntakeDecision::Slow { pressure, rate, reason, .. } = &critical else { panic!("{critical:?}") };
    assert_eq!((*pressure, *rate, reason.critical), (1.0, 100.0, true));
    assert!(reason.to_string().ends_with("critical event type: slowed, never refused"), "{reason}");

    // Soft only (no hard threshold): strongest at twice the soft threshold.
    let c = cfg(Some(100), None, None, None);
    assert_eq!(soft_pressure(lag(150, None), &c), 0.5);
    assert_eq!(soft_pressure(lag(400, None), &c), 1.0);
    assert_eq!(next_state(Normal, lag(u64::MAX, None), &c).0, Soft, "never hard without a hard threshold");
}

fn topology() -> Topology {
    let text = r#"
[topics.users]
partitions = 2
replication_factor = 1
subject_strategy = "record"

[events."user.registered"]
topic = "users"
schema = "schemas/users/registered.avsc"

[events."user.deleted"]
topic = "users"
schema = "schemas/users/deleted.avsc"

[projections.state]
sources = ["users"]
sink = "couchbase"
[projections.state.backpressure]
soft_lag = 10
hard_lag = 100
critical_events = ["user.deleted"]
[projections.state.couchbase]
document_id = "user::{aggregate_id}"

[projections.history]
sources = ["users"]
events = ["user.registered"]
sink = "couchbase"
[projections.history.backpressure]
soft_lag = 5
[projections.history.couchbase]
document_id = "h::{aggregate_id}"
"#;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    Topology::from_parts(text, Path::new("topology.toml"), |p| std::fs::read_to_string(repo.join(p)))
        .unwrap_or_else(|r| panic!("{r}"))
}

fn observed(entries: &[(&str, i64)]) -> BTreeMap<String, Observation> {
    entries.iter().map(|(name, high)| ((*name).to_owned(), Ok(vec![offsets(0, *high, None, Some(0))]))).collect()
}

#[test]
fn decides_over_the_projections_an_event_type_feeds() {
    let t = topology();
    let policy = IntakePolicy::default();
    let s = LagSnapshot::compute(&t, &observed(&[("state", 200), ("history", 7)]), &LagSnapshot::empty(), 1_000);
    assert_eq!(s.projections["state"].state, Hard);
    assert_eq!(s.projections["history"].state, Soft);
    assert_eq!(s.projections["state"].group, "sluice.state");
    // Fed by both: the hard one wins.
    let d = decide(&s, &t, "user.registered", &policy);
    assert_eq!((d.kind(), d.reason().map(|r| r.projection.as_str())), ("refuse", Some("state")));
    // Critical (marked by `state`), and `history` does not fold it: slowed, never refused.
    let d = decide(&s, &t, "user.deleted", &policy);
    assert_eq!((d.kind(), d.reason().map(|r| r.critical)), ("slow", Some(true)));
    // Unknown event type, and an empty snapshot: allowed.
    assert_eq!(decide(&s, &t, "nope", &policy), IntakeDecision::Allow);
    assert_eq!(decide(&LagSnapshot::empty(), &t, "user.registered", &policy), IntakeDecision::Allow);

    // A failed refresh keeps the last state and says why.
    let mut failed = BTreeMap::new();
    failed.insert("state".to_owned(), Err("broker down".to_owned()));
    let s2 = LagSnapshot::compute(&t, &failed, &s, 2_000);
    assert_eq!(s2.projections["state"].state, Hard);
    assert_eq!(s2.projections["state"].error.as_deref(), Some("broker down"));
    assert!(!s2.projections.contains_key("history"), "not observed, left out");
}

#[test]
fn json_shape_roundtrips() {
    let t = topology();
    let s = LagSnapshot::compute(&t, &observed(&[("state", 20)]), &LagSnapshot::empty(), 1_500);
    let json = serde_json::to_value(&s).expect("serialize");
    assert_eq!(json["taken_at_ms"], 1_500);
    let p = &json["projections"]["state"];
    assert_eq!(
        (p["state"].as_str(), p["lag_messages"].as_u64(), p["lag_seconds"].as_f64()),
        (Some("soft"), Some(20), Some(1.5))
    );
    assert_eq!(p["trigger"]["threshold"], "soft_lag");
    assert_eq!(p["partitions"][0]["committed"], serde_json::Value::Null);
    assert!(p.get("error").is_none());
    let back: LagSnapshot = serde_json::from_value(json).expect("deserialize");
    assert_eq!(back, s);
}

#[test]
fn token_bucket_paces() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut b = TokenBucket::new(10.0, 2, t0);
    assert_eq!(b.try_take(at(0)), Ok(()));
    assert_eq!(b.try_take(at(0)), Ok(()));
    assert_eq!(b.try_take(at(0)), Err(Duration::from_millis(100)));
    assert_eq!(b.try_take(at(100)), Ok(()));
    // Reservations queue: each waits one more interval.
    assert_eq!(b.reserve(at(100), Duration::from_secs(1)), Some(Duration::from_millis(100)));
    assert_eq!(b.reserve(at(100), Duration::from_secs(1)), Some(Duration::from_millis(200)));
    assert_eq!(b.reserve(at(100), Duration::from_millis(250)), None, "would wait 300 ms");
    // A batch larger than the burst waits for the difference, and those after it queue behind.
    let mut batch = TokenBucket::new(100.0, 10, t0);
    assert_eq!(batch.reserve_n(30, at(0), Duration::from_secs(1)), Some(Duration::from_millis(200)));
    assert_eq!(batch.reserve_n(10, at(0), Duration::from_secs(1)), Some(Duration::from_millis(300)));
    assert_eq!(batch.reserve_n(100, at(0), Duration::from_secs(1)), None);
    b.set_rate(0.0, at(100));
    assert_eq!(b.try_take(at(10_000)), Err(Duration::MAX), "a zero rate never refills");
    // A clock going backwards adds nothing.
    let mut b = TokenBucket::new(1.0, 1, at(1_000));
    assert_eq!(b.try_take(at(1_000)), Ok(()));
    assert!(b.try_take(at(0)).is_err());
}

fn state() -> impl Strategy<Value = BackpressureState> {
    prop_oneof![Just(Normal), Just(Soft), Just(Hard)]
}

/// Thresholds as the parser allows them (soft below hard), each possibly absent.
fn config() -> impl Strategy<Value = BackpressureConfig> {
    (1u64..10_000, 1u64..10_000, 1u64..600_000, 1u64..600_000, any::<[bool; 4]>()).prop_map(|(s, h, sa, ha, on)| {
        cfg(on[0].then_some(s), on[1].then_some(s + h), on[2].then_some(sa), on[3].then_some(sa + ha))
    })
}

fn any_lag() -> impl Strategy<Value = Lag> {
    (0u64..40_000, proptest::option::weighted(0.9, 0u64..2_500_000)).prop_map(|(m, a)| lag(m, a))
}

proptest! {
    #[test]
    fn hysteresis_never_flaps_on_a_constant_lag(c in config(), l in any_lag(), start in state()) {
        let mut s = start;
        let mut changes = 0;
        for step in 0..10 {
            let (next, _) = next_state(s, l, &c);
            if next != s {
                changes += 1;
                prop_assert_eq!(step, 0, "changed at step {} ({:?} → {:?})", step, s, next);
            }
            s = next;
        }
        prop_assert!(changes <= 1);
    }

    #[test]
    fn state_and_decision_are_monotone_in_lag(
        c in config(), prev in state(), a in any_lag(), more in 0u64..40_000, older in 0u64..2_500_000,
        critical in any::<bool>(),
    ) {
        let b = Lag { messages: a.messages + more, age: a.age.map(|x| x + Duration::from_millis(older)) };
        prop_assert!(next_state(prev, a, &c).0 <= next_state(prev, b, &c).0);
        let policy = IntakePolicy::default();
        let da = IntakeDecision::for_projection("p", &projection(prev, a, &c), &c, critical, &policy);
        let db = IntakeDecision::for_projection("p", &projection(prev, b, &c), &c, critical, &policy);
        let (sa, sb) = (da.severity(), db.severity());
        prop_assert!(sa.0 < sb.0 || (sa.0 == sb.0 && sa.1 <= sb.1), "{:?} then {:?}", da, db);
        // Within a slow-down, more pressure never means a higher rate or a shorter delay.
        if let (IntakeDecision::Slow { rate: ra, delay: wa, .. }, IntakeDecision::Slow { rate: rb, delay: wb, .. }) = (&da, &db) {
            prop_assert!(*rb <= *ra * (1.0 + 1e-9) && wb.as_secs_f64() >= wa.as_secs_f64() * (1.0 - 1e-9));
        }
    }

    #[test]
    fn critical_event_types_are_never_refused(c in config(), prev in state(), l in any_lag()) {
        let d = IntakeDecision::for_projection("p", &projection(prev, l, &c), &c, true, &IntakePolicy::default());
        prop_assert_ne!(d.kind(), "refuse");
    }

    /// Over any window, a bucket grants at most `burst + rate × window` tokens.
    #[test]
    fn token_bucket_never_exceeds_its_rate(
        rate in 1.0f64..1_000.0, burst in 1u32..20, steps in proptest::collection::vec((0u64..50, any::<bool>()), 1..200),
    ) {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate, burst, t0);
        let mut now = t0;
        let mut granted: Vec<Instant> = Vec::new();
        for (advance, reserve) in steps {
            now += Duration::from_millis(advance);
            if reserve {
                if let Some(wait) = b.reserve(now, Duration::from_secs(1)) { granted.push(now + wait); }
            } else if b.try_take(now).is_ok() {
                granted.push(now);
            }
        }
        granted.sort();
        for (i, first) in granted.iter().enumerate() {
            for (j, last) in granted.iter().enumerate().skip(i) {
                let window = last.duration_since(*first).as_secs_f64();
                let allowed = f64::from(burst) + rate * window + 1e-6;
                prop_assert!((j - i + 1) as f64 <= allowed, "{} tokens in {window}s", j - i + 1);
            }
        }
    }
}
