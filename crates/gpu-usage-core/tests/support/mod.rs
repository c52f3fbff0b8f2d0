//! The engine proof's support lives in the `gpu-usage-testing` crate (the
//! record type of the tests, the reference model, the readers and the job
//! runners), shared with the other crates' tests.
#![allow(dead_code, unused_imports)]

pub use gpu_usage_testing::*;

/// The instant the scripted engine tests are set at (they move on from it).
pub fn now() -> i64 {
    ms("2026-03-10T12:00:00Z")
}
