//! Prometheus metrics every process shares: the exposition (one registry
//! of everything the process counts, rendered in the Prometheus text format
//! or OpenMetrics) and the rollup gauges that are read from the database at
//! scrape time (they describe the shared database, not this process).
//!
//! Components keep their metric handles (counters, gauges, families are
//! shared atomics) and register clones of them into the registry a binary
//! assembles at start-up; the all-in-one binary puts the API's and the
//! worker's into one.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sea_orm::ConnectionTrait;

pub use prometheus_client::registry::Registry;

use crate::status;

/// Content type of the Prometheus text format, the default.
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// Content type of OpenMetrics, for scrapers that ask for it.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders `registry` as `content_type` (one of the two above).
pub fn render(registry: &Registry, openmetrics: bool) -> (String, &'static str) {
    let mut out = String::with_capacity(4096);
    let encoded = if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, registry)
    };
    if let Err(e) = encoded {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    let ct = if openmetrics {
        OPENMETRICS_TEXT
    } else {
        PROMETHEUS_TEXT
    };
    (out, ct)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LevelLabel {
    level: String,
}

/// Rollup lag and queue per level, refreshed from `status` at each scrape.
#[derive(Clone, Debug, Default)]
pub struct RollupGauges {
    lag: Family<LevelLabel, Gauge<f64, AtomicU64>>,
    pending: Family<LevelLabel, Gauge>,
    up: Gauge,
}

/// Bounds every scrape-time read so a hung database cannot hang a scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);

impl RollupGauges {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "gpu_usage_rollup_lag_seconds",
            "How far behind now each level is complete (now - complete_through)",
            self.lag.clone(),
        );
        r.register(
            "gpu_usage_rollup_pending_ranges",
            "Ranges queued for recomputation per level",
            self.pending.clone(),
        );
        r.register(
            "gpu_usage_rollup_status_up",
            "1 when the rollup status could be read at this scrape",
            self.up.clone(),
        );
    }

    /// Reads the status; on failure keeps the last values and says so in
    /// `gpu_usage_rollup_status_up`.
    pub async fn refresh(&self, db: &impl ConnectionTrait, now: DateTime<Utc>) {
        match tokio::time::timeout(SCRAPE_TIMEOUT, status::rollup_status(db, now)).await {
            Ok(Ok(levels)) => {
                for s in levels {
                    let label = LevelLabel {
                        level: s.level.to_string(),
                    };
                    let lag = (now - s.complete_through).num_milliseconds().max(0) as f64 / 1000.0;
                    self.lag.get_or_create(&label).set(lag);
                    self.pending
                        .get_or_create(&label)
                        .set(i64::try_from(s.pending_ranges).unwrap_or(i64::MAX));
                }
                self.up.set(1);
            }
            _ => {
                self.up.set(0);
            }
        }
    }
}

/// Something that adds its metrics to a registry: how a binary assembles
/// one registry from the components it runs.
pub trait RegisterMetrics: Send + Sync {
    fn register(&self, r: &mut Registry);
}

impl RegisterMetrics for RollupGauges {
    fn register(&self, r: &mut Registry) {
        RollupGauges::register(self, r);
    }
}

/// What one process exposes at `/metrics`: its registry, assembled once at
/// start-up, and the rollup gauges refreshed before each rendering.
#[derive(Clone)]
pub struct Exposition {
    registry: Arc<Registry>,
    rollup: RollupGauges,
}

impl Exposition {
    /// The rollup gauges and every component's metrics in one registry.
    pub fn new(components: &[&dyn RegisterMetrics]) -> Self {
        let rollup = RollupGauges::default();
        let mut registry = Registry::default();
        rollup.register(&mut registry);
        for c in components {
            c.register(&mut registry);
        }
        Self {
            registry: Arc::new(registry),
            rollup,
        }
    }

    /// Refreshes the scrape-time gauges, then renders everything.
    pub async fn render(
        &self,
        db: &impl ConnectionTrait,
        now: DateTime<Utc>,
        openmetrics: bool,
    ) -> (String, &'static str) {
        self.rollup.refresh(db, now).await;
        render(&self.registry, openmetrics)
    }
}

/// Whether a scraper asked for OpenMetrics in its `Accept` header.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}
