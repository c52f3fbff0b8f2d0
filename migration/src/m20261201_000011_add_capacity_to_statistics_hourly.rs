//! Capacity and utilisation on the hourly level: available and idle GPU
//! time, the over-capacity minutes that decide `capacity_complete`, and
//! peak concurrency (used and available).
use sea_orm_migration::prelude::*;

use crate::schema_util::*;

const TABLE: &str = "gpu_usage_statistics_hourly";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    add_capacity_columns(manager, TABLE, StatsLevel::Hourly).await
}

async fn down(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    drop_capacity_columns(manager, TABLE, StatsLevel::Hourly).await
}

migration!(up, down);
