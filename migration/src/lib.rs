//! Schema of the GPU usage accounting service, as sea-orm migrations.
//!
//! One DDL change per migration file: MySQL/MariaDB commit DDL implicitly, so a
//! migration that failed half-way could not be rolled back. On SQLite (where
//! DDL is transactional) a table and its secondary indexes are separate
//! statements inside the same migration, because SQLite has no inline `KEY`.
//!
//! `scripts/gpu_usage_schema.sql` builds the same schema for operators who
//! prefer `mysql < file`; `crates/gpu-usage-core/tests/schema/` proves the two
//! agree on MariaDB.
//!
//! Migrations never import the entities: they describe the schema as it was
//! on their date, which the entities may outgrow.

pub use sea_orm_migration::prelude::*;

/// The `Migration` of a file from its two steps, `async fn up(&SchemaManager)`
/// and `async fn down(&SchemaManager)`, so every file holds only what it
/// changes.
macro_rules! migration {
    ($up:path, $down:path) => {
        #[derive(DeriveMigrationName)]
        pub struct Migration;

        #[async_trait::async_trait]
        impl MigrationTrait for Migration {
            async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                $up(manager).await
            }

            async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                $down(manager).await
            }
        }
    };
}

/// A migration that creates `$table` from `$build(backend) -> (table,
/// indexes)` and drops it on the way down.
macro_rules! table_migration {
    ($table:expr, $build:path) => {
        async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
            let (table, indexes) = $build(manager.get_database_backend());
            $crate::schema_util::create_table_with_indexes(manager, $table, table, indexes).await
        }

        async fn down(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
            $crate::schema_util::drop_table(manager, $table).await
        }

        migration!(up, down);
    };
}

/// A migration that adds the capacity columns to the statistics table
/// `$table` of level `$level` and drops them on the way down.
macro_rules! capacity_migration {
    ($table:expr, $level:ident) => {
        use sea_orm_migration::prelude::*;

        use $crate::schema_util::{StatsLevel, add_capacity_columns, drop_capacity_columns};

        async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
            add_capacity_columns(manager, $table, StatsLevel::$level).await
        }

        async fn down(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
            drop_capacity_columns(manager, $table, StatsLevel::$level).await
        }

        migration!(up, down);
    };
}

/// Declares each migration module once and runs them in the listed order,
/// so the module list and the migrator's list cannot disagree.
macro_rules! migrator {
    ($($module:ident),* $(,)?) => {
        $(mod $module;)*

        pub struct Migrator;

        #[async_trait::async_trait]
        impl MigratorTrait for Migrator {
            fn migrations() -> Vec<Box<dyn MigrationTrait>> {
                vec![$(Box::new($module::Migration)),*]
            }
        }
    };
}

mod schema_util;

migrator!(
    m20261129_000001_create_gpu_usage_records,
    m20261129_000002_create_gpu_usage_statistics_minute,
    m20261129_000003_create_gpu_usage_statistics_hourly,
    m20261129_000004_create_gpu_usage_statistics_daily,
    m20261129_000005_create_gpu_usage_rollup_pending,
    m20261129_000006_create_gpu_usage_job_runs,
    m20261129_000007_create_gpu_usage_backfill_jobs,
    m20261129_000008_create_gpu_usage_retention_horizons,
    m20261201_000009_create_gpu_usage_worker_sessions,
    m20261201_000010_add_capacity_to_statistics_minute,
    m20261201_000011_add_capacity_to_statistics_hourly,
    m20261201_000012_add_capacity_to_statistics_daily,
    m20261201_000013_add_duration_index_to_records,
);
