//! Test support for every crate of the workspace (a dev-dependency only).
//!
//! - [`db`]: [`TestDb`], an isolated, migrated database per test on SQLite
//!   or MariaDB/MySQL, dropped when the value is dropped (also when the test
//!   panics), and [`dual_backend_test!`] to run one test body on both.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod db;

pub use db::{Backend, TestDb, mysql_server_url};
