use sea_orm::entity::prelude::*;

use crate::types::Granularity;

/// A range whose buckets at `level` must be recomputed.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "gpu_usage_rollup_pending")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub level: Granularity,
    pub range_start: DateTimeUtc,
    pub range_end: DateTimeUtc,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
