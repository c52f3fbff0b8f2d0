//! SeaORM entities, one module per table (SPEC §2 plus the service's own
//! bookkeeping tables). They are storage types only: never request or
//! response types. The generated `scope_value_key` column is deliberately
//! absent: the database computes it and the application must never write it.

pub mod backfill_job;
pub mod job_run;
pub mod record;
pub mod retention_horizon;
pub mod rollup_pending;
pub mod statistics_daily;
pub mod statistics_hourly;
pub mod statistics_minute;
