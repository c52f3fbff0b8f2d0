//! Where each source of the rollups is complete.
//!
//! Retention deletes old rows; a bucket rebuilt from a level whose rows were
//! (partly) deleted would overwrite good totals with less (a fault of the
//! original service). A level's rows are trusted for buckets at or after its
//! horizon: the later of what the cleanup job recorded before deleting and
//! what the configured retention would allow, plus a margin so a cleanup
//! running concurrently cannot pull rows away mid-rebuild.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::entities::retention_horizon;
use crate::error::Result;
use crate::settings::RetentionSettings;
use crate::types::Granularity;

pub const RECORDS_TABLE: &str = "gpu_usage_records";

/// Slack between a rebuild reading a level and a cleanup deleting from it.
const MARGIN: TimeDelta = TimeDelta::hours(1);

/// First instant from which each source is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizons {
    pub records: DateTime<Utc>,
    pub minute: DateTime<Utc>,
    pub hourly: DateTime<Utc>,
}

impl Horizons {
    /// Horizon of the level a `level` bucket is normally built from.
    pub fn finer_of(&self, level: Granularity) -> DateTime<Utc> {
        match level {
            Granularity::Minute => self.records,
            Granularity::Hourly => self.minute,
            Granularity::Daily => self.hourly,
        }
    }
}

/// Oldest `completed_at` ingest accepts: a record completing before this
/// would be deleted by the next cleanup, and the rollups no longer rebuild
/// from records that old.
pub fn oldest_accepted_completion(
    now: DateTime<Utc>,
    retention: &RetentionSettings,
) -> DateTime<Utc> {
    now - retention.records() + MARGIN
}

/// First instant from which ingest accepts a record's start: the start of
/// the first UTC day the daily level can still rebuild from records
/// (a record starting earlier would be counted in minute and hourly rows
/// but be missing from its day's daily row, which is kept forever).
pub fn first_rebuildable_day(now: DateTime<Utc>, retention: &RetentionSettings) -> DateTime<Utc> {
    Granularity::Daily.ceil(oldest_accepted_completion(now, retention))
}

pub async fn load(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    retention: &RetentionSettings,
) -> Result<Horizons> {
    let rows = retention_horizon::Entity::find().all(db).await?;
    let persisted = |table: &str| {
        rows.iter()
            .find(|r| r.table_name == table)
            .map(|r| r.deleted_before)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    };
    let by_config = |keep: Option<TimeDelta>| match keep {
        Some(keep) => now - keep + MARGIN,
        None => DateTime::<Utc>::MIN_UTC,
    };
    Ok(Horizons {
        records: persisted(RECORDS_TABLE).max(by_config(Some(retention.records()))),
        minute: persisted(Granularity::Minute.table_name())
            .max(by_config(Granularity::Minute.retention(retention))),
        hourly: persisted(Granularity::Hourly.table_name())
            .max(by_config(Granularity::Hourly.retention(retention))),
    })
}

/// Called by the cleanup job before it deletes rows of `table` older than
/// `cutoff`. Never moves a horizon backwards.
pub async fn record_deletion(
    db: &impl ConnectionTrait,
    table: &str,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<()> {
    retention_horizon::Entity::insert(retention_horizon::ActiveModel {
        table_name: Set(table.to_owned()),
        deleted_before: Set(cutoff),
        updated_at: Set(now),
    })
    // sea-query renders a bare `do_nothing()` as invalid MySQL; the
    // targeted form becomes `ON DUPLICATE KEY UPDATE table_name = table_name`.
    .on_conflict_do_nothing_on([retention_horizon::Column::TableName])
    .exec_without_returning(db)
    .await?;
    retention_horizon::Entity::update_many()
        .col_expr(
            retention_horizon::Column::DeletedBefore,
            Expr::value(cutoff),
        )
        .col_expr(retention_horizon::Column::UpdatedAt, Expr::value(now))
        .filter(retention_horizon::Column::TableName.eq(table))
        .filter(retention_horizon::Column::DeletedBefore.lt(cutoff))
        .exec(db)
        .await?;
    Ok(())
}
