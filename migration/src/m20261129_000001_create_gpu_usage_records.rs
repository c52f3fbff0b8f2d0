use sea_orm_migration::prelude::*;

use crate::schema_util::*;

const TABLE: &str = "gpu_usage_records";

fn table(backend: DbBackend) -> TableDef {
    let table = create(TABLE)
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
        .col(stamped(backend, "created_at"))
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
    (table, indexes)
}

table_migration!(TABLE, table);
