//! `Option<Duration>` as seconds with millisecond precision (`12.345`), `null` when unknown.
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_millis() as f64 / 1000.0)),
        None => s.serialize_none(),
    }
}

pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Option::<f64>::deserialize(d)?.map(|s| Duration::try_from_secs_f64(s).map_err(D::Error::custom)).transpose()
}
