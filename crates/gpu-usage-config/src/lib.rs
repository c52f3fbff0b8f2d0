//! The configuration of the GPU usage accounting service: where it comes
//! from ([`sources`]) and what it means ([`Settings`]), loaded once at
//! start-up and passed down by value. `config/default.toml` documents every
//! key.
//!
//! This crate sits below everything else (the migration CLI reads the
//! database URL through it, the domain crate the rest), so there is one
//! definition of each setting and of the layers they come from.

pub mod sources;

use chrono::TimeDelta;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub api: ApiSettings,
    pub worker: WorkerSettings,
    pub ingest: IngestSettings,
    pub retention: RetentionSettings,
    #[serde(default)]
    pub capacity: CapacitySettings,
    pub redis: RedisSettings,
    pub log: LogSettings,
}

impl Settings {
    /// Defaults, then config files, then `GPU_USAGE__*` environment variables.
    pub fn load() -> Result<Self, config::ConfigError> {
        sources::builder()
            .build()?
            .try_deserialize::<Self>()?
            .validated()
    }

    /// Values that deserialize but make no sense are refused at start-up
    /// rather than discovered by a job.
    fn validated(self) -> Result<Self, config::ConfigError> {
        let bad = |key: &str, why: &str| Err(config::ConfigError::Message(format!("{key}: {why}")));
        if self.retention.records_days < 1 {
            return bad(
                "retention.records_days",
                "must be at least 1 (records are the source of every rebuild)",
            );
        }
        if self.retention.delete_batch_size < 1 {
            return bad("retention.delete_batch_size", "must be at least 1");
        }
        if self.ingest.max_batch < 1 || self.ingest.max_task_duration_hours < 1 {
            return bad(
                "ingest",
                "max_batch and max_task_duration_hours must be at least 1",
            );
        }
        if self.capacity.heartbeat_interval_secs < 1 || self.capacity.missed_heartbeats < 1 {
            return bad(
                "capacity",
                "heartbeat_interval_secs and missed_heartbeats must be at least 1",
            );
        }
        let w = &self.worker;
        if [
            w.minute_interval_secs,
            w.hourly_interval_secs,
            w.daily_interval_secs,
            w.cleanup_interval_secs,
        ]
        .contains(&0)
        {
            return bad("worker.*_interval_secs", "must be at least 1");
        }
        if self.api.default_limit < 1 || self.api.default_limit > self.api.max_limit {
            return bad("api.default_limit", "must be between 1 and api.max_limit");
        }
        Ok(self)
    }

    /// Like [`Settings::load`] with extra overrides on top (tests, CLI flags).
    pub fn load_with(overrides: &[(&str, &str)]) -> Result<Self, config::ConfigError> {
        let mut b = sources::builder();
        for (k, v) in overrides {
            b = b.set_override(*k, *v)?;
        }
        b.build()?.try_deserialize::<Self>()?.validated()
    }
}

#[derive(Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `sqlite://…` or `mysql://…`; may hold a password, hence secret.
    pub url: SecretString,
    pub max_connections: u32,
    pub connect_timeout_secs: u64,
    pub acquire_timeout_secs: u64,
}

impl DatabaseSettings {
    pub fn is_sqlite(&self) -> bool {
        self.url.expose_secret().starts_with("sqlite:")
    }
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(self.url.expose_secret()))
            .field("max_connections", &self.max_connections)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("acquire_timeout_secs", &self.acquire_timeout_secs)
            .finish()
    }
}

/// `mysql://user:secret@host/db` → `mysql://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Read,
    Ingest,
    Admin,
}

impl Role {
    /// admin ⊇ ingest ⊇ read.
    pub fn allows(self, needed: Role) -> bool {
        let rank = |r: Role| match r {
            Role::Read => 0,
            Role::Ingest => 1,
            Role::Admin => 2,
        };
        rank(self) >= rank(needed)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    pub token: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiSettings {
    pub host: String,
    pub port: u16,
    pub public_reads: bool,
    #[serde(default)]
    pub tokens: Vec<ApiToken>,
    /// Single-token shortcuts that are easy to set from the environment.
    #[serde(default)]
    pub read_token: Option<SecretString>,
    #[serde(default)]
    pub ingest_token: Option<SecretString>,
    #[serde(default)]
    pub admin_token: Option<SecretString>,
    pub max_range_days: i64,
    pub default_limit: u64,
    pub max_limit: u64,
    pub max_body_bytes: usize,
}

impl ApiSettings {
    /// Every configured token, the list and the shortcuts together.
    pub fn all_tokens(&self) -> Vec<ApiToken> {
        let mut out = self.tokens.clone();
        let shortcuts = [
            ("read_token", Role::Read, &self.read_token),
            ("ingest_token", Role::Ingest, &self.ingest_token),
            ("admin_token", Role::Admin, &self.admin_token),
        ];
        for (name, role, token) in shortcuts {
            if let Some(t) = token
                && !t.expose_secret().is_empty()
            {
                out.push(ApiToken {
                    name: name.to_owned(),
                    role,
                    token: t.clone(),
                });
            }
        }
        out
    }

    pub fn max_range(&self) -> TimeDelta {
        TimeDelta::days(self.max_range_days)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkerSettings {
    pub http_host: String,
    pub http_port: u16,
    pub minute_interval_secs: u64,
    pub hourly_interval_secs: u64,
    pub daily_interval_secs: u64,
    pub cleanup_interval_secs: u64,
    pub backfill_poll_secs: u64,
    pub instance_id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IngestSettings {
    pub max_batch: usize,
    pub max_task_duration_hours: i64,
    pub clock_skew_secs: i64,
}

impl IngestSettings {
    pub fn max_task_duration(&self) -> TimeDelta {
        TimeDelta::hours(self.max_task_duration_hours)
    }
    pub fn clock_skew(&self) -> TimeDelta {
        TimeDelta::seconds(self.clock_skew_secs)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RetentionSettings {
    pub records_days: i64,
    pub minute_days: i64,
    pub hourly_days: i64,
    /// 0 = keep forever.
    pub daily_days: i64,
    pub job_runs_days: i64,
    pub delete_batch_size: u64,
}

impl RetentionSettings {
    pub fn records(&self) -> TimeDelta {
        TimeDelta::days(self.records_days)
    }

    /// A retention period in days as a duration; `None` (0 or less) keeps
    /// forever.
    pub fn keep(days: i64) -> Option<TimeDelta> {
        (days > 0).then(|| TimeDelta::days(days))
    }
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            records_days: 90,
            minute_days: 3,
            hourly_days: 30,
            daily_days: 0,
            job_runs_days: 14,
            delete_batch_size: 10_000,
        }
    }
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            max_batch: 10_000,
            max_task_duration_hours: 168,
            clock_skew_secs: 300,
        }
    }
}

/// How worker heartbeats keep sessions open.
#[derive(Debug, Clone, Deserialize)]
pub struct CapacitySettings {
    /// How often workers heartbeat; an open session counts this far past
    /// its latest heartbeat.
    pub heartbeat_interval_secs: i64,
    /// A session whose latest heartbeat is more than this many intervals
    /// old is ended, at that heartbeat plus one interval.
    pub missed_heartbeats: i64,
}

impl CapacitySettings {
    pub fn interval(&self) -> TimeDelta {
        TimeDelta::seconds(self.heartbeat_interval_secs)
    }

    /// Silence longer than this ends a session.
    pub fn silence_limit(&self) -> TimeDelta {
        self.interval() * i32::try_from(self.missed_heartbeats).unwrap_or(i32::MAX)
    }
}

impl Default for CapacitySettings {
    fn default() -> Self {
        Self {
            heartbeat_interval_secs: 30,
            missed_heartbeats: 3,
        }
    }
}

#[derive(Clone, Deserialize)]
pub struct RedisSettings {
    /// Empty disables the stream consumer.
    pub url: SecretString,
    pub stream: String,
    pub group: String,
    pub dead_letter_stream: String,
    pub batch_size: usize,
    pub block_ms: u64,
    pub claim_idle_ms: u64,
}

impl RedisSettings {
    pub fn enabled(&self) -> bool {
        !self.url.expose_secret().trim().is_empty()
    }
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact_url(self.url.expose_secret()))
            .field("stream", &self.stream)
            .field("group", &self.group)
            .field("dead_letter_stream", &self.dead_letter_stream)
            .field("batch_size", &self.batch_size)
            .field("block_ms", &self.block_ms)
            .field("claim_idle_ms", &self.claim_idle_ms)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub filter: String,
    pub format: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_password_is_redacted() {
        let s = Settings::load_with(&[("database.url", "mysql://app:hunter2@db:3306/waverless")])
            .unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(
            debug.contains("mysql://app:***@db:3306/waverless"),
            "{debug}"
        );
        assert_eq!(s.retention.minute_days, 3);
        assert_eq!(s.worker.minute_interval_secs, 60);
    }

    #[test]
    fn nonsense_values_are_refused() {
        let e = Settings::load_with(&[("retention.records_days", "0")]).unwrap_err();
        assert!(e.to_string().contains("retention.records_days"), "{e}");
        assert!(Settings::load_with(&[("worker.minute_interval_secs", "0")]).is_err());
        assert!(Settings::load_with(&[("api.default_limit", "60000")]).is_err());
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin.allows(Role::Ingest));
        assert!(Role::Ingest.allows(Role::Read));
        assert!(!Role::Read.allows(Role::Ingest));
        assert!(!Role::Ingest.allows(Role::Admin));
    }
}
