//! The demo's live traffic: every [`TICK`], the records that completed,
//! the worker sessions that started or ended and the heartbeats that fell
//! in the time since the last tick, from the same seeded generator as the
//! seeded week (so the week runs on seamlessly), stored through the same
//! domain calls as the API's ingest endpoints. The periodic rollups of the
//! worker then carry them into the statistics like any other data.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use gpu_usage_core::EngineConfig;
use gpu_usage_core::capacity::{self, Heartbeat, HeartbeatJson};
use gpu_usage_core::clock::Clock;
use gpu_usage_core::process::{self, Shutdown, ShutdownTrigger};
use gpu_usage_core::types::to_millis;
use gpu_usage_loadgen as loadgen;
use sea_orm::DatabaseConnection;
use tokio::task::JoinHandle;

use super::{explain, generator, store_batches, store_records, store_sessions};

/// How often the traffic is delivered.
pub const TICK: Duration = Duration::from_secs(5);
/// The longest stretch one tick catches up on (after the database was
/// unreachable for a while): older traffic is skipped.
const MAX_WINDOW: TimeDelta = TimeDelta::hours(1);

/// What one tick (or the whole run) stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub records: usize,
    pub sessions: usize,
    pub heartbeats: usize,
}

impl Traffic {
    fn add(&mut self, other: Traffic) {
        self.records += other.records;
        self.sessions += other.sessions;
        self.heartbeats += other.heartbeats;
    }
}

/// The running traffic task.
pub struct Live {
    trigger: ShutdownTrigger,
    task: JoinHandle<Traffic>,
}

impl Live {
    /// Starts the traffic from `from` (the end of what is already stored).
    pub fn spawn(
        db: DatabaseConnection,
        cfg: EngineConfig,
        clock: Arc<dyn Clock>,
        from: DateTime<Utc>,
    ) -> Live {
        let (trigger, shutdown) = process::channel();
        let task = tokio::spawn(run(db, cfg, clock, from, shutdown));
        Live { trigger, task }
    }

    /// Stops the traffic (a tick in progress finishes, up to `grace`).
    pub async fn stop(self, grace: Duration) {
        self.trigger.trigger();
        match tokio::time::timeout(grace, self.task).await {
            Ok(Ok(total)) => tracing::info!(
                records = total.records,
                sessions = total.sessions,
                heartbeats = total.heartbeats,
                "demo traffic stopped"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "demo traffic task ended abnormally"),
            Err(_) => tracing::warn!("demo traffic did not stop in time; abandoned"),
        }
    }
}

async fn run(
    db: DatabaseConnection,
    cfg: EngineConfig,
    clock: Arc<dyn Clock>,
    mut from: DateTime<Utc>,
    shutdown: Shutdown,
) -> Traffic {
    let mut total = Traffic::default();
    let mut failures = 0u32;
    while !shutdown.is_triggered() {
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            () = shutdown.wait() => break,
        }
        let now = to_millis(clock.now());
        let start = from.max(now - MAX_WINDOW);
        let Ok(window) = loadgen::TimeRange::new(start, now) else {
            continue;
        };
        match tick(&db, window, &cfg).await {
            Ok(t) => {
                tracing::debug!(
                    records = t.records,
                    heartbeats = t.heartbeats,
                    "demo traffic"
                );
                total.add(t);
                from = now;
                failures = 0;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                // Said once, then every minute or so while it lasts.
                if failures == 1 || failures.is_multiple_of(12) {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        failures,
                        "demo traffic failed; retrying"
                    );
                }
            }
        }
    }
    total
}

/// Stores the traffic of `window` as of its end: records completed in it,
/// sessions that started or ended in it, then its heartbeats (which keep
/// the open sessions open).
pub async fn tick(
    db: &DatabaseConnection,
    window: loadgen::TimeRange,
    cfg: &EngineConfig,
) -> anyhow::Result<Traffic> {
    let now = window.end();
    let generator = generator(now)?;
    let records = store_records(db, generator.records(window), now, cfg).await?;
    let from = window.start();
    let changed = generator
        .sessions(window)
        .filter(|s| s.started_at >= from || s.ended_at.is_some_and(|e| e >= from));
    let sessions = store_sessions(db, changed, now, cfg).await?;
    let interval = cfg
        .capacity
        .interval()
        .to_std()
        .unwrap_or(Duration::from_secs(30))
        .clamp(Duration::from_secs(1), Duration::from_secs(3_600));
    let beats = generator.heartbeats(window, interval)?;
    let heartbeats = store_batches::<HeartbeatJson, Heartbeat, _>(
        beats,
        "heartbeat",
        cfg,
        move |items| async move {
            let n = items.len();
            capacity::apply_heartbeats(db, items, now, cfg)
                .await
                .map_err(explain)?;
            Ok(n)
        },
    )
    .await?;
    Ok(Traffic {
        records,
        sessions,
        heartbeats,
    })
}
