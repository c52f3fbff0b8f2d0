//! The fleet: GPU specs, endpoints and workers, drawn once from the seed.
//!
//! - Specs come from a fixed list of real cards (`a100-80g` …), then
//!   numbered copies (`a100-80g-2`) past its end.
//! - Endpoints get a popularity (Zipf-like: the first is busiest), a
//!   typical task length (3–30 s), a GPU count per task (1, 2, 4 or 8) and
//!   one spec, or two for about a third of them (75 % / 25 % of workers).
//! - Workers belong to one endpoint and one of its specs, with that
//!   endpoint's GPU count. The pool is split over endpoints in proportion
//!   to the GPU time they need.

use rand::RngExt;

use crate::config::Config;
use crate::durations::DurationModel;
use crate::rng::{Purpose, Stream, stream};
use crate::time::DAY_MS;

/// `(gpu_type, gpu_memory_gb)` of the known specs, most common first; a
/// spec is named after both (`A100`, 80 → `a100-80g`).
const SPECS: &[(&str, u32)] = &[
    ("A100", 80),
    ("H100", 80),
    ("L40S", 48),
    ("RTX4090", 24),
    ("A100", 40),
    ("H200", 141),
    ("L4", 24),
    ("A10G", 24),
    ("RTX3090", 24),
    ("T4", 16),
    ("B200", 180),
    ("MI300X", 192),
];

const ENDPOINTS: &[&str] = &[
    "flux-dev",
    "llama-70b",
    "sdxl-turbo",
    "whisper-large",
    "qwen-72b",
    "mistral-7b",
    "flux-schnell",
    "llama-8b",
    "deepseek-r1",
    "wan-video",
    "bge-embed",
    "kokoro-tts",
    "sam2",
    "musicgen",
    "qwen-vl",
    "stable-video",
];

/// Utilisation the auto-sized pool aims at while its workers are up, and
/// the share of time a worker is up (see the timeline module).
const TARGET_UTILISATION: f64 = 0.6;
const UPTIME: f64 = 0.82;
/// Fewest workers an auto-sized pool gives an endpoint, so that one is
/// nearly always up (an explicit `workers` may go down to one each).
const MIN_AUTO_WORKERS: usize = 3;

/// A GPU spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    pub gpu_type: String,
    /// Memory per GPU.
    pub gpu_memory_gb: u32,
}

/// An endpoint (a deployed model).
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub name: String,
    /// Share of all arrivals, summing to 1 over the endpoints.
    pub weight: f64,
    /// GPUs per task and per worker.
    pub gpu_count: u32,
    /// Indices into [`Fleet::specs`]: one or two.
    pub specs: Vec<usize>,
    /// Indices into [`Fleet::workers`]; never empty.
    pub workers: Vec<usize>,
    pub(crate) durations: DurationModel,
}

/// A GPU worker (a pod serving one endpoint on one spec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    pub id: String,
    /// Index into [`Fleet::endpoints`].
    pub endpoint: usize,
    /// Index into [`Fleet::specs`].
    pub spec: usize,
    pub gpu_count: u32,
    /// Offset of this worker's daily recycling within the day.
    pub(crate) phase_ms: i64,
}

/// Everything the records, sessions and heartbeats refer to.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    pub specs: Vec<Spec>,
    pub endpoints: Vec<Endpoint>,
    pub workers: Vec<Worker>,
    /// Running sums of the endpoint weights, to pick an endpoint by one draw.
    pub(crate) cumulative: Vec<f64>,
}

fn spec(i: usize) -> Spec {
    let (gpu_type, mem) = SPECS[i % SPECS.len()];
    let name = format!("{}-{mem}g", gpu_type.to_lowercase());
    let round = i / SPECS.len();
    Spec {
        name: if round == 0 {
            name
        } else {
            format!("{name}-{}", round + 1)
        },
        gpu_type: gpu_type.to_owned(),
        gpu_memory_gb: mem,
    }
}

fn endpoint_name(i: usize) -> String {
    ENDPOINTS
        .get(i)
        .map_or_else(|| format!("endpoint-{i:02}"), |n| (*n).to_owned())
}

fn draw_endpoint(rng: &mut Stream, i: usize, specs: usize) -> Endpoint {
    let median = 3.0 * 10f64.powf(rng.random::<f64>());
    let gpu_count = match rng.random::<f64>() {
        u if u < 0.5 => 1,
        u if u < 0.75 => 2,
        u if u < 0.9 => 4,
        _ => 8,
    };
    let primary = rng.random_range(0..specs);
    let mut specs_of = vec![primary];
    if specs > 1 && rng.random_bool(0.35) {
        let other = (primary + rng.random_range(1..specs)) % specs;
        specs_of.push(other);
    }
    Endpoint {
        name: endpoint_name(i),
        weight: 1.0 / ((i + 1) as f64).powf(0.9),
        gpu_count,
        specs: specs_of,
        workers: Vec::new(),
        durations: DurationModel::new(median),
    }
}

/// Splits `total` into one share per demand, at least `min_each` each
/// (as far as `total` allows), the rest in proportion to the demands
/// (largest remainders get the leftovers).
fn allocate(total: usize, demands: &[f64], min_each: usize) -> Vec<usize> {
    let n = demands.len();
    let min_each = min_each.min(total / n.max(1)).max(1);
    let spare = total.saturating_sub(n * min_each) as f64;
    let sum: f64 = demands.iter().sum();
    let exact: Vec<f64> = demands.iter().map(|d| spare * d / sum).collect();
    let mut counts: Vec<usize> = exact.iter().map(|x| min_each + *x as usize).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let mut left = total.saturating_sub(counts.iter().sum());
    for i in order.into_iter().cycle().take(n * 2) {
        if left == 0 {
            break;
        }
        counts[i] += 1;
        left -= 1;
    }
    counts
}

impl Fleet {
    /// Draws the fleet for `config` (assumed valid).
    pub(crate) fn build(config: &Config) -> Self {
        let mut rng = stream(config.seed, Purpose::Catalog, 0, 0);
        let specs: Vec<Spec> = (0..config.specs).map(spec).collect();
        let mut endpoints: Vec<Endpoint> = (0..config.endpoints)
            .map(|i| draw_endpoint(&mut rng, i, config.specs))
            .collect();
        let weight_sum: f64 = endpoints.iter().map(|e| e.weight).sum();
        for e in &mut endpoints {
            e.weight /= weight_sum;
        }
        // Busy workers each endpoint needs on average.
        let demands: Vec<f64> = endpoints
            .iter()
            .map(|e| config.rate * e.weight * e.durations.mean_s())
            .collect();
        let (total, min_each) = match config.workers {
            Some(n) => (n, 1),
            None => {
                let busy: f64 = demands.iter().sum();
                let n = (busy / (TARGET_UTILISATION * UPTIME)).ceil() as usize;
                (n + MIN_AUTO_WORKERS * endpoints.len(), MIN_AUTO_WORKERS)
            }
        };
        let mut workers = Vec::with_capacity(total);
        for (ei, count) in allocate(total, &demands, min_each).into_iter().enumerate() {
            let e = &mut endpoints[ei];
            let primary = if e.specs.len() > 1 && count > 1 {
                ((count as f64 * 0.75).round() as usize).clamp(1, count - 1)
            } else {
                e.specs.truncate(1);
                count
            };
            for k in 0..count {
                e.workers.push(workers.len());
                workers.push(Worker {
                    id: format!("{}-w{k:03}", e.name),
                    endpoint: ei,
                    spec: e.specs[usize::from(k >= primary)],
                    gpu_count: e.gpu_count,
                    phase_ms: rng.random_range(0..DAY_MS),
                });
            }
        }
        let cumulative = endpoints
            .iter()
            .scan(0.0, |acc, e| {
                *acc += e.weight;
                Some(*acc)
            })
            .collect();
        Self {
            specs,
            endpoints,
            workers,
            cumulative,
        }
    }

    /// The endpoint for a uniform draw `u` in `[0, 1)`.
    pub(crate) fn endpoint_for(&self, u: f64) -> usize {
        self.cumulative
            .partition_point(|&c| c <= u)
            .min(self.endpoints.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_keeps_the_total_and_one_each() {
        let counts = allocate(10, &[5.0, 1.0, 0.0, 3.0], 1);
        assert_eq!(counts.iter().sum::<usize>(), 10);
        assert!(counts.iter().all(|&c| c >= 1));
        assert!(counts[0] > counts[1]);
        assert_eq!(allocate(3, &[1.0, 1.0, 1.0], 1), vec![1, 1, 1]);
        let counts = allocate(20, &[5.0, 1.0, 0.0, 3.0], 3);
        assert_eq!(counts.iter().sum::<usize>(), 20);
        assert_eq!(counts[2], 3);
        assert_eq!(allocate(4, &[1.0, 1.0], 3), vec![2, 2], "the total wins");
    }

    #[test]
    fn known_specs_are_named_after_type_and_memory() {
        let names: Vec<String> = (0..SPECS.len()).map(|i| spec(i).name).collect();
        assert_eq!(
            names,
            [
                "a100-80g",
                "h100-80g",
                "l40s-48g",
                "rtx4090-24g",
                "a100-40g",
                "h200-141g",
                "l4-24g",
                "a10g-24g",
                "rtx3090-24g",
                "t4-16g",
                "b200-180g",
                "mi300x-192g",
            ]
        );
    }

    #[test]
    fn fleet_is_consistent() {
        let config = Config {
            endpoints: 20,
            specs: 14,
            workers: Some(500),
            ..Config::default()
        };
        let fleet = Fleet::build(&config);
        assert_eq!(fleet.workers.len(), 500);
        assert_eq!(fleet.specs[12].name, "a100-80g-2");
        assert_eq!(fleet.endpoints[17].name, "endpoint-17");
        let mut ids: Vec<&str> = fleet.workers.iter().map(|w| w.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 500, "worker ids are unique");
        for (ei, e) in fleet.endpoints.iter().enumerate() {
            assert!(!e.workers.is_empty());
            for &w in &e.workers {
                let w = &fleet.workers[w];
                assert_eq!(w.endpoint, ei);
                assert!(e.specs.contains(&w.spec));
                assert_eq!(w.gpu_count, e.gpu_count);
            }
        }
        assert_eq!(fleet.endpoint_for(0.0), 0);
        assert_eq!(fleet.endpoint_for(0.999_999_9), 19);
    }
}
