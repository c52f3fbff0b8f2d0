//! Capacity and utilisation on the hourly level: available and idle GPU
//! time, the over-capacity minutes that decide `capacity_complete`, and
//! peak concurrency (used and available).
capacity_migration!("gpu_usage_statistics_hourly", Hourly);
