use sea_orm_migration::prelude::*;

use crate::schema_util::*;

const TABLE: &str = "gpu_usage_statistics_hourly";

fn table(backend: DbBackend) -> TableDef {
    statistics_table(backend, TABLE, StatsLevel::Hourly)
}

table_migration!(TABLE, table);
