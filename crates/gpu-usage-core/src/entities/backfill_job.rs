use sea_orm::entity::prelude::*;

use crate::backfill::BackfillStatus;
use crate::types::Levels;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "gpu_usage_backfill_jobs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub range_start: DateTimeUtc,
    pub range_end: DateTimeUtc,
    pub granularity: Levels,
    pub status: BackfillStatus,
    pub next_chunk_start: DateTimeUtc,
    pub chunks_total: i32,
    pub chunks_done: i32,
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
