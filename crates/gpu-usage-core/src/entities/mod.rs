//! SeaORM entities, one module per table: the usage records, the three
//! statistics levels (declared through [`statistics`]'s macro), worker
//! sessions (capacity), and the service's own bookkeeping tables. They are
//! storage types: what is read and written on the wire is declared beside
//! the domain types that use them.

#[macro_use]
mod statistics;

pub mod backfill_job;
pub mod job_run;
pub mod record;
pub mod retention_horizon;
pub mod rollup_pending;
pub mod statistics_daily;
pub mod statistics_hourly;
pub mod statistics_minute;
pub mod worker_session;
