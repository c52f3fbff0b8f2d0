use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;

use crate::types::TaskStatus;

crate::record::task_fields! {
    /// One finished task (`gpu_usage_records`); `task_id` is unique.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "gpu_usage_records")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
    } {
        pub duration_seconds: i32,
        #[sea_orm(column_type = "Decimal(Some((16, 6)))")]
        pub gpu_hours: Decimal,
        pub created_at: DateTime<Utc>,
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
