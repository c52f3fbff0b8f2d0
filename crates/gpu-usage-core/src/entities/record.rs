use sea_orm::entity::prelude::*;

use crate::types::TaskStatus;

/// One finished task (`gpu_usage_records`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "gpu_usage_records")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub task_id: String,
    pub endpoint: String,
    pub worker_id: Option<String>,
    pub spec_name: Option<String>,
    pub gpu_count: i32,
    pub gpu_type: Option<String>,
    pub gpu_memory_gb: Option<i32>,
    pub started_at: DateTimeUtc,
    pub completed_at: DateTimeUtc,
    pub duration_seconds: i32,
    #[sea_orm(column_type = "Decimal(Some((16, 6)))")]
    pub gpu_hours: Decimal,
    pub status: TaskStatus,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
