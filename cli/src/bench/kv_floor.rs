//! The Couchbase SDK alone, as a floor under the Couchbase projections' CPU: `count` documents
//! inserted, read and removed on a projection's collection, [`MAX_DOCUMENTS_IN_FLIGHT`] at a time
//! as the sink keeps them, each kind of operation timed and metered on its own. A projection
//! cannot spend less CPU per event than its operations per event
//! (`sluice_couchbase_operations_total`) times these figures, whatever it does between them.

use std::time::Instant;

use anyhow::Context as _;
use couchbase::collection::Collection;
use couchbase::transcoding::raw_json;
use futures::{StreamExt, TryStreamExt, stream};
use sluice_consumers::sinks::couchbase::service::{KV_TIMEOUT, deadline};
use sluice_consumers::sinks::couchbase::sink::MAX_DOCUMENTS_IN_FLIGHT;

use super::{Row, cost};

/// The phase column of the floor's rows.
pub(super) const PHASE: &str = "kv-floor";

/// A document about the size of a sample user's (`_sluice` bookkeeping included).
const BODY: &[u8] = br#"{"email":"u1@example.com","display_name":"User 1","country":"NL","locale":"nl-NL","updated_at":"2026-01-01T00:00:00.000Z","_sluice":{"version":3,"fields":{"email":1,"display_name":2,"country":1,"locale":2,"updated_at":3},"source":{"topic":"users","partition":3,"offset":1234}}}"#;

/// One row per operation (`insert`, `get`, `remove`): `count` of them on `collection`, under
/// keys no projection writes (`sluice-kv-floor::<run>::<i>`), all removed again by the last.
pub(super) async fn rows(collection: &Collection, run: &str, count: usize) -> anyhow::Result<Vec<Row>> {
    let key = |i: usize| format!("sluice-kv-floor::{run}::{i}");
    let (value, flags) = raw_json::encode(&BODY).context("encoding the floor's document")?;
    let mut rows = Vec::new();
    rows.push(
        timed("insert", count, |i| {
            let key = key(i);
            async move { deadline("insert", KV_TIMEOUT, collection.insert_raw(&key, value, flags, None)).await.map(drop) }
        })
        .await?,
    );
    rows.push(
        timed("get", count, |i| {
            let key = key(i);
            async move { deadline("get", KV_TIMEOUT, collection.get(&key, None)).await.map(drop) }
        })
        .await?,
    );
    rows.push(
        timed("remove", count, |i| {
            let key = key(i);
            async move { deadline("remove", KV_TIMEOUT, collection.remove(&key, None)).await.map(drop) }
        })
        .await?,
    );
    Ok(rows)
}

/// `count` operations `op(0..count)`, [`MAX_DOCUMENTS_IN_FLIGHT`] at a time: their row, with this
/// process's CPU over them.
async fn timed<F, Fut>(operation: &str, count: usize, op: F) -> anyhow::Result<Row>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), sluice_consumers::sinks::couchbase::Error>>,
{
    let meter = cost::Meter::this_process();
    let start = Instant::now();
    stream::iter(0..count)
        .map(op)
        .buffer_unordered(MAX_DOCUMENTS_IN_FLIGHT)
        .try_collect::<()>()
        .await
        .with_context(|| format!("the Couchbase floor's {operation}s"))?;
    let elapsed = start.elapsed();
    Ok(Row { cost: meter.finish(), ..Row::drained(PHASE.into(), operation.into(), "couchbase", count as u64, elapsed) })
}
