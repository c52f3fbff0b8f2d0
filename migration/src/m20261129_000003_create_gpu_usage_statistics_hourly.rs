use sea_orm_migration::prelude::*;

use crate::schema_util::*;

const TABLE: &str = "gpu_usage_statistics_hourly";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let (table, indexes) =
            statistics_table(manager.get_database_backend(), TABLE, StatsLevel::Hourly);
        create_table_with_indexes(manager, TABLE, table, indexes).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_table(manager, TABLE).await
    }
}
