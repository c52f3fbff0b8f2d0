use sea_orm::entity::prelude::*;

use crate::types::ScopeType;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "gpu_usage_statistics_hourly")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub time_bucket: DateTimeUtc,
    pub scope_type: ScopeType,
    pub scope_value: Option<String>,
    pub total_tasks: i32,
    pub completed_tasks: i32,
    pub failed_tasks: i32,
    #[sea_orm(column_type = "Decimal(Some((16, 6)))")]
    pub total_gpu_hours: Decimal,
    #[sea_orm(column_type = "Decimal(Some((10, 2)))")]
    pub avg_gpu_count: Decimal,
    pub max_gpu_count: i32,
    pub gpu_milliseconds: i64,
    pub gpu_count_sum: i64,
    pub peak_minute: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Decimal(Some((16, 6)))", nullable)]
    pub peak_gpu_hours: Option<Decimal>,
    pub period_start: DateTimeUtc,
    pub period_end: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
