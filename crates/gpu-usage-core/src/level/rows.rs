//! What a statistics read returns, one struct per level: selected from the
//! level's table by column name, serialised to JSON (field names of the
//! original service), documented in OpenAPI from these doc comments, and
//! written as CSV (every field but `id`) — all from the same struct.
//!
//! The engine's exact integers (`gpu_milliseconds`, `gpu_count_sum`) stay
//! in the table; rows carry the decimals derived from them.

use chrono::{DateTime, Utc};
use sea_orm::DerivePartialModel;
use serde::Serialize;
use utoipa::ToSchema;

use super::Row;
use super::values::{Average, Day, Hours, Rate, Seconds};
use crate::entities::{statistics_daily, statistics_hourly, statistics_minute};
use crate::types::ScopeType;

/// One minute of one scope.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, DerivePartialModel)]
#[sea_orm(entity = "statistics_minute::Entity")]
pub struct MinuteRow {
    pub id: i64,
    /// Start of the minute.
    pub time_bucket: DateTime<Utc>,
    pub scope_type: ScopeType,
    /// Null for global.
    pub scope_value: Option<String>,
    /// Tasks completing in this minute.
    pub total_tasks: i32,
    pub completed_tasks: i32,
    pub failed_tasks: i32,
    /// GPU-seconds used inside this minute (tasks spread over the minutes
    /// they ran in).
    #[schema(value_type = f64)]
    pub total_gpu_seconds: Seconds,
    #[schema(value_type = f64)]
    pub total_gpu_hours: Hours,
    /// GPUs per task over the tasks completing here.
    #[schema(value_type = f64)]
    pub avg_gpu_count: Average,
    pub max_gpu_count: i32,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One hour of one scope.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, DerivePartialModel)]
#[sea_orm(entity = "statistics_hourly::Entity")]
pub struct HourlyRow {
    pub id: i64,
    /// Start of the hour.
    pub time_bucket: DateTime<Utc>,
    pub scope_type: ScopeType,
    /// Null for global.
    pub scope_value: Option<String>,
    pub total_tasks: i32,
    pub completed_tasks: i32,
    pub failed_tasks: i32,
    #[schema(value_type = f64)]
    pub total_gpu_hours: Hours,
    /// Task-weighted over the hour's tasks (not a mean of minute averages).
    #[schema(value_type = f64)]
    pub avg_gpu_count: Average,
    pub max_gpu_count: i32,
    /// Minute of the hour with the most GPU time (ties: the earliest); null
    /// without GPU time.
    pub peak_minute: Option<DateTime<Utc>>,
    #[schema(value_type = Option<f64>)]
    pub peak_gpu_hours: Option<Hours>,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One UTC day of one scope; `time_bucket` is its midnight.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, DerivePartialModel)]
#[sea_orm(entity = "statistics_daily::Entity")]
pub struct DailyRow {
    pub id: i64,
    #[schema(value_type = DateTime<Utc>)]
    pub time_bucket: Day,
    pub scope_type: ScopeType,
    /// Null for global.
    pub scope_value: Option<String>,
    pub total_tasks: i32,
    pub completed_tasks: i32,
    pub failed_tasks: i32,
    #[schema(value_type = f64)]
    pub total_gpu_hours: Hours,
    #[schema(value_type = f64)]
    pub avg_gpu_count: Average,
    pub max_gpu_count: i32,
    /// Hour of the day with the most GPU time; null without GPU time.
    pub peak_hour: Option<DateTime<Utc>>,
    #[schema(value_type = Option<f64>)]
    pub peak_gpu_hours: Option<Hours>,
    /// Null until capacity is known.
    #[schema(value_type = Option<f64>)]
    pub available_gpu_hours: Option<Hours>,
    /// Null until capacity is known.
    #[schema(value_type = Option<f64>)]
    pub utilization_rate: Option<Rate>,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

macro_rules! row_key {
    ($($row:ty),*) => {$(
        impl Row for $row {
            fn time_bucket(&self) -> DateTime<Utc> {
                self.time_bucket.into()
            }

            fn scope_value(&self) -> Option<&str> {
                self.scope_value.as_deref()
            }
        }
    )*};
}
row_key!(MinuteRow, HourlyRow, DailyRow);
