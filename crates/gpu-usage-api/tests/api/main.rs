//! Integration tests of the HTTP API: the real server on port 0 over an
//! isolated database, each test on SQLite and on MariaDB/MySQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod auth;
mod capacity;
mod dashboard;
mod docs;
mod errors;
mod grafana;
mod metrics;
mod outage;
mod reads;
mod triggers;
mod waverless;
