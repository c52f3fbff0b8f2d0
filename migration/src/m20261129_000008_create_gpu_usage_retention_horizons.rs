//! How far retention has deleted each table. A rollup must not rebuild a
//! bucket from a finer level whose rows before this point may be gone.
use sea_orm_migration::prelude::*;

use crate::schema_util::*;

const TABLE: &str = "gpu_usage_retention_horizons";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let table = Table::create()
            .table(Alias::new(TABLE))
            .col(string("table_name", 64).not_null().primary_key())
            .col(datetime_ms(backend, "deleted_before").not_null())
            .col(
                datetime_ms(backend, "updated_at")
                    .not_null()
                    .default(now_default(backend)),
            )
            .to_owned();
        create_table_with_indexes(manager, TABLE, table, vec![]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_table(manager, TABLE).await
    }
}
