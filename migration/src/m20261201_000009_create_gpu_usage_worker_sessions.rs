//! Capacity: one row per interval a GPU worker was up and billable
//! (reported as a session, or opened and extended by heartbeats).
//! `counted_until` is how far the rollups count the session: its end once
//! it has one, else as far as its heartbeats vouch for it.
use sea_orm_migration::prelude::*;

use crate::schema_util::*;

const TABLE: &str = "gpu_usage_worker_sessions";

fn table(backend: DbBackend) -> TableDef {
    let table = create(TABLE)
        .col(id("id"))
        .col(string("worker_id", 255).not_null())
        .col(string("endpoint", 255).not_null())
        .col(string("spec_name", 255).null())
        .col(string("gpu_type", 100).null())
        .col(int("gpu_count").not_null())
        .col(datetime_ms(backend, "started_at").not_null())
        .col(datetime_ms(backend, "ended_at").null())
        .col(datetime_ms(backend, "last_seen").not_null())
        .col(datetime_ms(backend, "counted_until").not_null())
        .col(stamped(backend, "created_at"))
        .col(stamped(backend, "updated_at"))
        .to_owned();
    let indexes = vec![
        index(TABLE, "uk_worker_started", &["worker_id", "started_at"])
            .unique()
            .to_owned(),
        index(TABLE, "idx_sessions_started_at", &["started_at"]),
        index(TABLE, "idx_sessions_counted_until", &["counted_until"]),
        index(TABLE, "idx_sessions_ended_at", &["ended_at"]),
        index(TABLE, "idx_sessions_endpoint", &["endpoint"]),
    ];
    (table, indexes)
}

table_migration!(TABLE, table);
