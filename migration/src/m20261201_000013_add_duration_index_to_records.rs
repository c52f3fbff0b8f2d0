//! The longest stored task bounds how far past a range the minute rollup
//! must read records (`MAX(duration_seconds)`, one index probe); a
//! configured maximum could differ between processes or be lowered after
//! longer tasks were stored.
use sea_orm_migration::prelude::*;

use crate::schema_util::*;

const TABLE: &str = "gpu_usage_records";

/// SQLite index names are per database: prefixed like the tables' own.
fn name(backend: DbBackend) -> String {
    match backend {
        DbBackend::Sqlite => format!("{TABLE}_idx_duration"),
        _ => "idx_duration".to_owned(),
    }
}

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let name = name(manager.get_database_backend());
    manager
        .create_index(index(TABLE, &name, &["duration_seconds"]))
        .await
}

async fn down(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let name = name(manager.get_database_backend());
    manager
        .drop_index(Index::drop().name(name).table(Alias::new(TABLE)).to_owned())
        .await
}

migration!(up, down);
