//! Statistics as two databases holding the same statistics agree on them
//! (ids and write times left out), and the reference such a snapshot is
//! compared with: the same records rebuilt on a fresh database.

use std::fmt::Debug;

use chrono::{DateTime, NaiveDate, Utc};
use gpu_usage_core::EngineConfig;
use gpu_usage_core::entities::{statistics_daily, statistics_hourly, statistics_minute};
use gpu_usage_core::rollup;
use gpu_usage_core::types::{Granularity, TimeRange};
use sea_orm::{DatabaseConnection, EntityTrait};

use crate::TestDb;

/// A statistics row with its id and `updated_at` zeroed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrippedRow {
    pub level: Granularity,
    /// The bucket as stored (`Debug` text: an instant, or a date for daily
    /// rows).
    pub bucket: String,
    /// The UTC day the bucket lies in.
    pub day: NaiveDate,
    /// The whole row (`Debug` text of its model).
    pub row: String,
}

trait Strip: Debug {
    fn strip(self) -> StrippedRow;
}

macro_rules! strip_model {
    ($table:ident, $level:expr, $day:expr) => {
        impl Strip for $table::Model {
            fn strip(self) -> StrippedRow {
                let bucket = self.time_bucket;
                let row = $table::Model {
                    id: 0,
                    updated_at: DateTime::<Utc>::UNIX_EPOCH,
                    ..self
                };
                StrippedRow {
                    level: $level,
                    bucket: format!("{bucket:?}"),
                    day: ($day)(bucket),
                    row: format!("{row:?}"),
                }
            }
        }
    };
}

strip_model!(statistics_minute, Granularity::Minute, |b: DateTime<
    Utc,
>| b.date_naive());
strip_model!(statistics_hourly, Granularity::Hourly, |b: DateTime<
    Utc,
>| b.date_naive());
strip_model!(statistics_daily, Granularity::Daily, |b: NaiveDate| b);

async fn stripped_level<E>(db: &DatabaseConnection) -> Vec<StrippedRow>
where
    E: EntityTrait,
    E::Model: Strip,
{
    let rows = E::find().all(db).await.unwrap();
    rows.into_iter().map(Strip::strip).collect()
}

/// Every statistics row, minute, hourly then daily, in table order.
pub async fn stripped_rows(db: &DatabaseConnection) -> Vec<StrippedRow> {
    let mut out = stripped_level::<statistics_minute::Entity>(db).await;
    out.extend(stripped_level::<statistics_hourly::Entity>(db).await);
    out.extend(stripped_level::<statistics_daily::Entity>(db).await);
    out
}

/// Every statistics row as sorted `"<level> <row>"` strings: equal
/// snapshots mean equal statistics.
pub async fn snapshot(db: &DatabaseConnection) -> Vec<String> {
    let mut out: Vec<String> = stripped_rows(db)
        .await
        .into_iter()
        .map(|r| format!("{} {}", r.level, r.row))
        .collect();
    out.sort();
    out
}

/// Stores JSON records through ingest (parsed like a transport) and checks
/// they were all inserted.
pub async fn ingest_json(
    db: &DatabaseConnection,
    recs: Vec<serde_json::Value>,
    now: DateTime<Utc>,
) {
    let n = recs.len();
    let parsed = recs.into_iter().map(crate::wire).collect();
    let r = gpu_usage_core::ingest::ingest(db, parsed, now, &EngineConfig::default())
        .await
        .unwrap();
    assert_eq!(r.inserted, n, "{r:?}");
}

/// The same records on a fresh database, rebuilt by one direct recompute
/// of every level over `range`: what any sequence of jobs must converge to.
pub async fn reference(
    backend: crate::Backend,
    recs: Vec<serde_json::Value>,
    range: TimeRange,
    now: DateTime<Utc>,
) -> Vec<String> {
    let r = TestDb::new(backend).await;
    ingest_json(&r.db, recs, now).await;
    recompute_every_level(&r.db, range, now).await;
    snapshot(&r.db).await
}

/// One direct recompute of every level over `range`, finest first.
pub async fn recompute_every_level(db: &DatabaseConnection, range: TimeRange, now: DateTime<Utc>) {
    for level in Granularity::ALL {
        rollup::recompute(db, level, range, now, &EngineConfig::default())
            .await
            .unwrap();
    }
}
