//! What a statistics read returns, one struct per level: selected from the
//! level's table by column name, serialised to JSON (field names of the
//! original service), documented in OpenAPI from these doc comments, and
//! written as CSV (every field but `id`) — all from the same struct. The
//! fields every level has are declared once, in [`stats_row!`].
//!
//! The engine's exact integers (`gpu_milliseconds`, `gpu_count_sum`,
//! `available_gpu_ms`, ...) stay in the table; rows carry the decimals
//! derived from them.

use chrono::{DateTime, Utc};
use sea_orm::DerivePartialModel;
use serde::Serialize;
use utoipa::ToSchema;

use super::Row;
use super::values::{Average, Day, Hours, Rate, Seconds};
use crate::entities::{statistics_daily, statistics_hourly, statistics_minute};
use crate::types::ScopeType;

/// `stats_row!(Name, entity, bucket type, { fields before total_gpu_hours },
/// { fields after max_gpu_count })`: the row struct with the fields every
/// level has around the level's own.
macro_rules! stats_row {
    (
        $(#[$doc:meta])*
        $name:ident, entity = $entity:tt,
        bucket = [$(#[$bucket_meta:meta])*] $bucket:ty,
        { $($before:tt)* },
        { $($after:tt)* }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, ToSchema, DerivePartialModel)]
        #[sea_orm(entity = $entity)]
        pub struct $name {
            pub id: i64,
            /// Start of the bucket (UTC).
            $(#[$bucket_meta])*
            pub time_bucket: $bucket,
            pub scope_type: ScopeType,
            /// Null for global.
            pub scope_value: Option<String>,
            /// Tasks completing in the bucket.
            pub total_tasks: i32,
            pub completed_tasks: i32,
            pub failed_tasks: i32,
            $($before)*
            /// GPU time used inside the bucket (tasks spread over the
            /// minutes they ran in).
            #[schema(value_type = f64)]
            pub total_gpu_hours: Hours,
            /// GPUs per task over the tasks completing here, task-weighted
            /// (never a mean of finer averages).
            #[schema(value_type = f64)]
            pub avg_gpu_count: Average,
            pub max_gpu_count: i32,
            $($after)*
            /// GPU time the worker sessions made available; 0 when none was
            /// reported (null in daily rows written before capacity).
            #[schema(value_type = Option<f64>)]
            pub available_gpu_hours: Option<Hours>,
            /// used ÷ available (0.7312 = 73.12 %); null when nothing was
            /// available. Above 1 means the capacity reports are incomplete.
            #[schema(value_type = Option<f64>)]
            pub utilization_rate: Option<Rate>,
            /// Σ over the bucket's minutes of max(available − used, 0).
            #[schema(value_type = f64)]
            pub idle_gpu_hours: Hours,
            /// Null when no capacity was reported; false when some minute
            /// used more than was available.
            pub capacity_complete: Option<bool>,
            /// Most GPUs used at one instant inside the bucket.
            pub peak_gpus_in_use: i32,
            /// Most GPUs available at one instant inside the bucket.
            pub peak_gpus_available: i32,
            pub period_start: DateTime<Utc>,
            pub period_end: DateTime<Utc>,
            pub updated_at: DateTime<Utc>,
        }

        impl Row for $name {
            fn time_bucket(&self) -> DateTime<Utc> {
                self.time_bucket.into()
            }

            fn scope_value(&self) -> Option<&str> {
                self.scope_value.as_deref()
            }
        }
    };
}

stats_row! {
    /// One minute of one scope.
    MinuteRow, entity = "statistics_minute::Entity",
    bucket = [] DateTime<Utc>,
    {
        /// GPU-seconds used inside this minute.
        #[schema(value_type = f64)]
        pub total_gpu_seconds: Seconds,
        /// GPU-seconds available inside this minute.
        #[schema(value_type = f64)]
        pub available_gpu_seconds: Seconds,
    },
    {}
}

stats_row! {
    /// One hour of one scope.
    HourlyRow, entity = "statistics_hourly::Entity",
    bucket = [] DateTime<Utc>,
    {},
    {
        /// Minute of the hour with the most GPU time (ties: the earliest);
        /// null without GPU time.
        pub peak_minute: Option<DateTime<Utc>>,
        #[schema(value_type = Option<f64>)]
        pub peak_gpu_hours: Option<Hours>,
    }
}

stats_row! {
    /// One UTC day of one scope; `time_bucket` is its midnight.
    DailyRow, entity = "statistics_daily::Entity",
    bucket = [#[schema(value_type = DateTime<Utc>)]] Day,
    {},
    {
        /// Hour of the day with the most GPU time; null without GPU time.
        pub peak_hour: Option<DateTime<Utc>>,
        #[schema(value_type = Option<f64>)]
        pub peak_gpu_hours: Option<Hours>,
    }
}
