//! One row per job execution (not per skipped tick): what ran where, when,
//! and how it ended. Read by /status and by the multi-replica tests.
use sea_orm_migration::prelude::*;

use crate::schema_util::*;

const TABLE: &str = "gpu_usage_job_runs";

fn table(backend: DbBackend) -> TableDef {
    let table = create(TABLE)
        .col(id("id"))
        .col(string("job", 64).not_null())
        .col(string("runner", 255).not_null())
        .col(datetime_ms(backend, "started_at").not_null())
        .col(datetime_ms(backend, "finished_at").null())
        .col(string("outcome", 32).not_null())
        .col(bigint("rows_written").not_null().default(0))
        .col(text("detail").null())
        .to_owned();
    let indexes = vec![index(
        TABLE,
        "idx_job_runs_job_started",
        &["job", "started_at"],
    )];
    (table, indexes)
}

table_migration!(TABLE, table);
