//! The library's error type.

use thiserror::Error;

/// What can go wrong in the library: a bad configuration, or an output that
/// could not be written or sent.
#[derive(Debug, Error)]
pub enum Error {
    /// The configuration cannot generate anything sensible.
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("Redis: {0}")]
    Redis(#[from] deadpool_redis::redis::RedisError),
    #[error("Redis pool: {0}")]
    RedisPool(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
