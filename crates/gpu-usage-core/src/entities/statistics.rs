//! The three statistics tables share every column but the bucket type and
//! a few of their own; this macro declares the shared ones once, so a
//! column every level has is added in one place (and in a migration).

/// `statistics_entity! { table = "...", bucket = Type, { own fields } }`
/// expands to the level's SeaORM entity (`Model`, `Entity`, `Column`,
/// `ActiveModel`). The generated `scope_value_key` column is deliberately
/// absent: the database computes it and the application never writes it.
macro_rules! statistics_entity {
    (
        $(#[$doc:meta])*
        table = $table:tt,
        bucket = $bucket:ty,
        { $($own:tt)* }
    ) => {
        use sea_orm::entity::prelude::*;

        use crate::types::ScopeType;

        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = $table)]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i64,
            pub time_bucket: $bucket,
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
            /// Exact GPU time used, the source of every decimal of it.
            pub gpu_milliseconds: i64,
            /// Σ gpu_count over the tasks completing here (task-weighted
            /// averages at coarser levels).
            pub gpu_count_sum: i64,
            /// Exact GPU time the worker sessions made available.
            pub available_gpu_ms: i64,
            /// Σ over the bucket's minutes of max(available − used, 0).
            pub idle_gpu_ms: i64,
            /// Minutes of the bucket where tasks used more than was
            /// available: `capacity_complete` is false exactly when > 0.
            pub overused_minutes: i32,
            #[sea_orm(column_type = "Decimal(Some((16, 6)))")]
            pub idle_gpu_hours: Decimal,
            #[sea_orm(column_type = "Decimal(Some((14, 4)))", nullable)]
            pub utilization_rate: Option<Decimal>,
            pub capacity_complete: Option<bool>,
            pub peak_gpus_in_use: i32,
            pub peak_gpus_available: i32,
            $($own)*
            pub period_start: DateTimeUtc,
            pub period_end: DateTimeUtc,
            pub updated_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    };
}
