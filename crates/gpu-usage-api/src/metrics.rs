//! The API's own metrics: requests by route and status, and their latency.
//! Served with everything else the process counts at `/metrics` (beside
//! `/healthz`, unauthenticated like it; it belongs behind the network
//! boundary, where Prometheus scrapes it).

use std::time::Duration;

use gpu_usage_core::metrics::{RegisterMetrics, Registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The matched route pattern (`/api/v1/gpu-usage/hourly`), or
    /// `unmatched`: never the raw path, which clients choose.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl HttpMetrics {
    pub fn observe(&self, method: &str, route: Option<&str>, status: u16, took: Duration) {
        let route = route.unwrap_or("unmatched").to_owned();
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.clone(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route,
            })
            .observe(took.as_secs_f64());
    }
}

impl RegisterMetrics for HttpMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            "gpu_usage_http_requests",
            "HTTP requests by method, route and status",
            self.requests.clone(),
        );
        r.register(
            "gpu_usage_http_request_duration_seconds",
            "HTTP request latency by method and route",
            self.latency.clone(),
        );
    }
}
