//! Tracked backfills: a range rebuilt chunk by chunk; `next_chunk_start` is
//! the resume point after a crash.
use sea_orm_migration::prelude::*;

use crate::schema_util::*;

const TABLE: &str = "gpu_usage_backfill_jobs";

fn table(backend: DbBackend) -> TableDef {
    let table = create(TABLE)
        .col(id("id"))
        .col(datetime_ms(backend, "range_start").not_null())
        .col(datetime_ms(backend, "range_end").not_null())
        // minute, hourly, daily or all: which levels to rebuild.
        .col(string("granularity", 16).not_null().default("all"))
        .col(string("status", 32).not_null())
        .col(datetime_ms(backend, "next_chunk_start").not_null())
        .col(int("chunks_total").not_null())
        .col(int("chunks_done").not_null().default(0))
        .col(text("error").null())
        .col(stamped(backend, "created_at"))
        .col(stamped(backend, "updated_at"))
        .col(datetime_ms(backend, "started_at").null())
        .col(datetime_ms(backend, "finished_at").null())
        .to_owned();
    let indexes = vec![index(TABLE, "idx_backfill_status", &["status"])];
    (table, indexes)
}

table_migration!(TABLE, table);
