use sea_orm::entity::prelude::*;

/// An interval a GPU worker was up and billable
/// (`gpu_usage_worker_sessions`), identified by (worker_id, started_at).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "gpu_usage_worker_sessions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub worker_id: String,
    pub endpoint: String,
    pub spec_name: Option<String>,
    pub gpu_type: Option<String>,
    pub gpu_count: i32,
    pub started_at: DateTimeUtc,
    /// `None` while the worker is up.
    pub ended_at: Option<DateTimeUtc>,
    /// Its latest heartbeat or report.
    pub last_seen: DateTimeUtc,
    /// How far the rollups count it: `ended_at` once set, else as far as
    /// its heartbeats vouch for (advanced by the sessions job).
    pub counted_until: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
