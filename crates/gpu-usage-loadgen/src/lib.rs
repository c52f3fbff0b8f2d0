//! Load generator for the GPU usage accounting service.
//!
//! Realistic usage records, worker sessions and heartbeats, deterministic
//! from a seed, streamed (bounded memory whatever the volume), and the
//! outputs that deliver them: JSON lines, CSV for MySQL `LOAD DATA`, HTTP
//! batches, Redis stream entries. It speaks to the service only through its
//! wire formats; it does not link any of the service's crates.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use gpu_usage_loadgen::{Config, Generator, TimeRange};
//!
//! let generator = Generator::new(Config { seed: 7, rate: 0.05, ..Config::default() })?;
//! let day = TimeRange::new(
//!     Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap(),
//!     Utc.with_ymd_and_hms(2026, 11, 3, 0, 0, 0).unwrap(),
//! )?;
//! let records: Vec<_> = generator.records(day).collect();
//! assert!(records.len() > 3_000);
//! let json = serde_json::to_string(&records[0])?;
//! assert!(json.starts_with(r#"{"task_id":"lg-7-"#));
//! let sessions = generator.sessions(day).count();
//! assert!(sessions > 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Module map
//!
//! | module | what |
//! |--------|------|
//! | [`config`] | [`Config`]: seed, rate, daily cycle, fleet size, shares |
//! | [`generator`] | [`Generator`]: `records(range)`, `sessions(range)`, `heartbeats(range, interval)` |
//! | [`records`] | [`Record`] (wire JSON of `POST /records`), the [`Records`] iterator |
//! | [`sessions`] | [`Session`], [`Heartbeat`] (wire JSON of docs/CAPACITY.md, the worker as a [`WorkerIdentity`]) and their iterators |
//! | [`catalog`] | the [`Fleet`]: specs, endpoints, workers |
//! | `arrivals`, `durations`, `timeline`, `rng` | the models (private): Poisson arrivals with a daily cycle, heavy-tailed durations, worker up-times, seeded streams |
//! | [`load_data`] | CSV rows for `LOAD DATA LOCAL INFILE` into `gpu_usage_records` |
//! | [`output`] | batching, [`output::http`] and [`output::redis`] senders, the run [`output::Report`] |
//! | [`time`] | [`TimeRange`] and the timestamp formats |
//!
//! # The model in brief
//!
//! Arrivals are a Poisson process at `rate`, optionally following a daily
//! cycle (peak 14:00 UTC). Durations mix seconds (most), minutes (9 %) and
//! hours (1 %), so a few tasks cross midnight. Each endpoint is served by
//! one or two specs; each record goes to a worker of its endpoint that was
//! up for the whole task where one is found. Workers are up for sessions of
//! hours with gaps, recycled daily. About 10 % of records fail, 3 % lack a
//! spec and 2 % are CPU-only (`gpu_count` 0).

pub mod catalog;
pub mod config;
pub mod error;
pub mod generator;
pub mod load_data;
pub mod output;
pub mod records;
pub mod sessions;
pub mod time;

mod arrivals;
mod durations;
mod rng;
mod timeline;

pub use catalog::{Endpoint, Fleet, Spec, Worker};
pub use config::Config;
pub use error::{Error, Result};
pub use generator::Generator;
pub use output::{Item, Kind};
pub use records::{Record, Records, Status};
pub use sessions::{Heartbeat, Heartbeats, Session, Sessions, WorkerIdentity};
pub use time::TimeRange;
