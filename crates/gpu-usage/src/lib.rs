//! The all-in-one first run's library part: the demo mode behind
//! `gpu-usage --demo` ([`demo`]), here so that its tests can drive it
//! against a test database. The binary is `src/main.rs`.

pub mod demo;
