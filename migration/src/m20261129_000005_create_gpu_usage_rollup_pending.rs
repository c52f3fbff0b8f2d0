//! Work queue of the rollups: ranges whose buckets must be recomputed at one
//! level. Ingest adds minute ranges in the same transaction as the records;
//! each level, once recomputed, adds the range for the next coarser level.
use sea_orm_migration::prelude::*;

use crate::schema_util::*;

const TABLE: &str = "gpu_usage_rollup_pending";

fn table(backend: DbBackend) -> TableDef {
    let table = create(TABLE)
        .col(id("id"))
        .col(string("level", 16).not_null())
        .col(datetime_ms(backend, "range_start").not_null())
        .col(datetime_ms(backend, "range_end").not_null())
        .col(stamped(backend, "created_at"))
        .to_owned();
    let indexes = vec![index(
        TABLE,
        "idx_pending_level_start",
        &["level", "range_start"],
    )];
    (table, indexes)
}

table_migration!(TABLE, table);
