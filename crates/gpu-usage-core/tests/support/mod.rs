//! The engine proof's support lives in the `gpu-usage-testing` crate (the
//! record type of the tests, the reference model, the readers and the job
//! runners), shared with the other crates' tests.
#![allow(unused_imports)]

pub use gpu_usage_testing::*;
