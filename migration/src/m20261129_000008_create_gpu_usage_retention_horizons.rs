//! How far retention has deleted each table. A rollup must not rebuild a
//! bucket from a finer level whose rows before this point may be gone.
use sea_orm_migration::prelude::*;

use crate::schema_util::*;

const TABLE: &str = "gpu_usage_retention_horizons";

fn table(backend: DbBackend) -> TableDef {
    let table = create(TABLE)
        .col(string("table_name", 64).not_null().primary_key())
        .col(datetime_ms(backend, "deleted_before").not_null())
        .col(stamped(backend, "updated_at"))
        .to_owned();
    (table, vec![])
}

table_migration!(TABLE, table);
