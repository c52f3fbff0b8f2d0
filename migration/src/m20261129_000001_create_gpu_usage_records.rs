use sea_orm_migration::prelude::*;

use crate::schema_util::*;

const TABLE: &str = "gpu_usage_records";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let table = Table::create()
            .table(Alias::new(TABLE))
            .col(id("id"))
            .col(string("task_id", 255).not_null())
            .col(string("endpoint", 255).not_null())
            .col(string("worker_id", 255).null())
            .col(string("spec_name", 255).null())
            .col(int("gpu_count").not_null())
            .col(string("gpu_type", 100).null())
            .col(int("gpu_memory_gb").null())
            .col(datetime_ms(backend, "started_at").not_null())
            .col(datetime_ms(backend, "completed_at").not_null())
            .col(int("duration_seconds").not_null())
            .col(decimal("gpu_hours", 16, 6).not_null())
            .col(string("status", 50).not_null())
            .col(
                datetime_ms(backend, "created_at")
                    .not_null()
                    .default(now_default(backend)),
            )
            .to_owned();
        let indexes = vec![
            index(TABLE, "idx_task_id_unique", &["task_id"])
                .unique()
                .to_owned(),
            index(TABLE, "idx_endpoint", &["endpoint"]),
            index(TABLE, "idx_spec_name", &["spec_name"]),
            index(TABLE, "idx_started_at", &["started_at"]),
            index(TABLE, "idx_completed_at", &["completed_at"]),
            index(TABLE, "idx_created_at", &["created_at"]),
        ];
        create_table_with_indexes(manager, TABLE, table, indexes).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_table(manager, TABLE).await
    }
}
