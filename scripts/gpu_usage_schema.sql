-- Schema of the GPU usage accounting service, for operators who set databases
-- up by hand:
--
--   mysql -h <host> -P <port> -u <user> -p <database> < scripts/gpu_usage_schema.sql
--
-- It creates exactly what the `migration` crate creates (`migration up`), on
-- MySQL 8 and MariaDB 10.6+, and records every migration as applied in
-- `seaql_migrations`, so `migration status` reports the schema as up to date
-- and a later `migration up` only applies migrations newer than this file.
-- crates/gpu-usage-core/tests/schema/ proves that both produce the same
-- columns, indexes, engines and collations.
--
-- Safe to run again: tables are created only if missing and migration rows
-- are inserted only if missing. It never alters an existing table: it
-- creates each table as the migrations leave it, with the columns later
-- migrations add appended in the order they add them. A database created
-- from an older copy of this file is brought up to date by `migration up`.
--
-- Create the database first, with a binary utf8mb4 default, for example:
--   CREATE DATABASE waverless CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
--
-- Keep this file in step with migration/src/*.rs: every new migration adds its
-- DDL here and its version to the INSERT at the end. Statements end with a
-- semicolon at the end of a line (the schema test splits on that), and no
-- comment line ends with one.

SET NAMES utf8mb4;

-- m20261129_000001_create_gpu_usage_records: one row per finished task.
CREATE TABLE IF NOT EXISTS `gpu_usage_records` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `task_id` VARCHAR(255) NOT NULL,
  `endpoint` VARCHAR(255) NOT NULL,
  `worker_id` VARCHAR(255) NULL,
  `spec_name` VARCHAR(255) NULL,
  `gpu_count` INT NOT NULL,
  `gpu_type` VARCHAR(100) NULL,
  `gpu_memory_gb` INT NULL,
  `started_at` DATETIME(3) NOT NULL,
  `completed_at` DATETIME(3) NOT NULL,
  `duration_seconds` INT NOT NULL,
  `gpu_hours` DECIMAL(16, 6) NOT NULL,
  `status` VARCHAR(50) NOT NULL,
  `created_at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_task_id_unique` (`task_id`),
  KEY `idx_endpoint` (`endpoint`),
  KEY `idx_spec_name` (`spec_name`),
  KEY `idx_started_at` (`started_at`),
  KEY `idx_completed_at` (`completed_at`),
  KEY `idx_created_at` (`created_at`),
  -- m20261201_000013_add_duration_index_to_records
  KEY `idx_duration` (`duration_seconds`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- m20261129_000002_create_gpu_usage_statistics_minute, with the capacity
-- columns of m20261201_000010 appended
CREATE TABLE IF NOT EXISTS `gpu_usage_statistics_minute` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `time_bucket` DATETIME NOT NULL,
  `scope_type` VARCHAR(50) NOT NULL,
  `scope_value` VARCHAR(255) NULL,
  `total_tasks` INT NOT NULL DEFAULT 0,
  `completed_tasks` INT NOT NULL DEFAULT 0,
  `failed_tasks` INT NOT NULL DEFAULT 0,
  `total_gpu_seconds` DECIMAL(18, 3) NOT NULL DEFAULT 0,
  `total_gpu_hours` DECIMAL(16, 6) NOT NULL DEFAULT 0,
  `avg_gpu_count` DECIMAL(10, 2) NOT NULL DEFAULT 0,
  `max_gpu_count` INT NOT NULL DEFAULT 0,
  `gpu_milliseconds` BIGINT NOT NULL DEFAULT 0,
  `gpu_count_sum` BIGINT NOT NULL DEFAULT 0,
  `period_start` DATETIME(3) NOT NULL,
  `period_end` DATETIME(3) NOT NULL,
  `updated_at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  `scope_value_key` VARCHAR(255) GENERATED ALWAYS AS (COALESCE(`scope_value`, '__GLOBAL__')) STORED,
  `available_gpu_ms` BIGINT NOT NULL DEFAULT 0,
  `idle_gpu_ms` BIGINT NOT NULL DEFAULT 0,
  `overused_minutes` INT NOT NULL DEFAULT 0,
  `available_gpu_hours` DECIMAL(16, 6) NOT NULL DEFAULT 0,
  `utilization_rate` DECIMAL(14, 4) NULL,
  `idle_gpu_hours` DECIMAL(16, 6) NOT NULL DEFAULT 0,
  `capacity_complete` BOOL NULL,
  `peak_gpus_in_use` INT NOT NULL DEFAULT 0,
  `peak_gpus_available` INT NOT NULL DEFAULT 0,
  `available_gpu_seconds` DECIMAL(18, 3) NOT NULL DEFAULT 0,
  PRIMARY KEY (`id`),
  UNIQUE KEY `uk_time_scope` (`time_bucket`, `scope_type`, `scope_value_key`),
  KEY `idx_time_bucket` (`time_bucket`),
  KEY `idx_scope` (`scope_type`, `scope_value`),
  KEY `idx_updated_at` (`updated_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- m20261129_000003_create_gpu_usage_statistics_hourly, with the capacity
-- columns of m20261201_000011 appended
CREATE TABLE IF NOT EXISTS `gpu_usage_statistics_hourly` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `time_bucket` DATETIME NOT NULL,
  `scope_type` VARCHAR(50) NOT NULL,
  `scope_value` VARCHAR(255) NULL,
  `total_tasks` INT NOT NULL DEFAULT 0,
  `completed_tasks` INT NOT NULL DEFAULT 0,
  `failed_tasks` INT NOT NULL DEFAULT 0,
  `total_gpu_hours` DECIMAL(16, 6) NOT NULL DEFAULT 0,
  `avg_gpu_count` DECIMAL(10, 2) NOT NULL DEFAULT 0,
  `max_gpu_count` INT NOT NULL DEFAULT 0,
  `gpu_milliseconds` BIGINT NOT NULL DEFAULT 0,
  `gpu_count_sum` BIGINT NOT NULL DEFAULT 0,
  `peak_minute` DATETIME NULL,
  `peak_gpu_hours` DECIMAL(16, 6) NULL,
  `period_start` DATETIME(3) NOT NULL,
  `period_end` DATETIME(3) NOT NULL,
  `updated_at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  `scope_value_key` VARCHAR(255) GENERATED ALWAYS AS (COALESCE(`scope_value`, '__GLOBAL__')) STORED,
  `available_gpu_ms` BIGINT NOT NULL DEFAULT 0,
  `idle_gpu_ms` BIGINT NOT NULL DEFAULT 0,
  `overused_minutes` INT NOT NULL DEFAULT 0,
  `available_gpu_hours` DECIMAL(16, 6) NOT NULL DEFAULT 0,
  `utilization_rate` DECIMAL(14, 4) NULL,
  `idle_gpu_hours` DECIMAL(16, 6) NOT NULL DEFAULT 0,
  `capacity_complete` BOOL NULL,
  `peak_gpus_in_use` INT NOT NULL DEFAULT 0,
  `peak_gpus_available` INT NOT NULL DEFAULT 0,
  PRIMARY KEY (`id`),
  UNIQUE KEY `uk_time_scope` (`time_bucket`, `scope_type`, `scope_value_key`),
  KEY `idx_time_bucket` (`time_bucket`),
  KEY `idx_scope` (`scope_type`, `scope_value`),
  KEY `idx_updated_at` (`updated_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- m20261129_000004_create_gpu_usage_statistics_daily, with the capacity
-- columns of m20261201_000012 appended (and its utilization_rate widened)
CREATE TABLE IF NOT EXISTS `gpu_usage_statistics_daily` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `time_bucket` DATE NOT NULL,
  `scope_type` VARCHAR(50) NOT NULL,
  `scope_value` VARCHAR(255) NULL,
  `total_tasks` INT NOT NULL DEFAULT 0,
  `completed_tasks` INT NOT NULL DEFAULT 0,
  `failed_tasks` INT NOT NULL DEFAULT 0,
  `total_gpu_hours` DECIMAL(16, 6) NOT NULL DEFAULT 0,
  `avg_gpu_count` DECIMAL(10, 2) NOT NULL DEFAULT 0,
  `max_gpu_count` INT NOT NULL DEFAULT 0,
  `gpu_milliseconds` BIGINT NOT NULL DEFAULT 0,
  `gpu_count_sum` BIGINT NOT NULL DEFAULT 0,
  `peak_hour` DATETIME NULL,
  `peak_gpu_hours` DECIMAL(16, 6) NULL,
  `available_gpu_hours` DECIMAL(16, 6) NULL,
  `utilization_rate` DECIMAL(14, 4) NULL,
  `period_start` DATETIME(3) NOT NULL,
  `period_end` DATETIME(3) NOT NULL,
  `updated_at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  `scope_value_key` VARCHAR(255) GENERATED ALWAYS AS (COALESCE(`scope_value`, '__GLOBAL__')) STORED,
  `available_gpu_ms` BIGINT NOT NULL DEFAULT 0,
  `idle_gpu_ms` BIGINT NOT NULL DEFAULT 0,
  `overused_minutes` INT NOT NULL DEFAULT 0,
  `idle_gpu_hours` DECIMAL(16, 6) NOT NULL DEFAULT 0,
  `capacity_complete` BOOL NULL,
  `peak_gpus_in_use` INT NOT NULL DEFAULT 0,
  `peak_gpus_available` INT NOT NULL DEFAULT 0,
  PRIMARY KEY (`id`),
  UNIQUE KEY `uk_time_scope` (`time_bucket`, `scope_type`, `scope_value_key`),
  KEY `idx_time_bucket` (`time_bucket`),
  KEY `idx_scope` (`scope_type`, `scope_value`),
  KEY `idx_updated_at` (`updated_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- m20261129_000005_create_gpu_usage_rollup_pending: ranges whose buckets
-- must be recomputed at one level (the rollups' work queue).
CREATE TABLE IF NOT EXISTS `gpu_usage_rollup_pending` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `level` VARCHAR(16) NOT NULL,
  `range_start` DATETIME(3) NOT NULL,
  `range_end` DATETIME(3) NOT NULL,
  `created_at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (`id`),
  KEY `idx_pending_level_start` (`level`, `range_start`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- m20261129_000006_create_gpu_usage_job_runs: one row per job execution.
CREATE TABLE IF NOT EXISTS `gpu_usage_job_runs` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `job` VARCHAR(64) NOT NULL,
  `runner` VARCHAR(255) NOT NULL,
  `started_at` DATETIME(3) NOT NULL,
  `finished_at` DATETIME(3) NULL,
  `outcome` VARCHAR(32) NOT NULL,
  `rows_written` BIGINT NOT NULL DEFAULT 0,
  `detail` TEXT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_job_runs_job_started` (`job`, `started_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- m20261129_000007_create_gpu_usage_backfill_jobs: tracked, resumable
-- backfills.
CREATE TABLE IF NOT EXISTS `gpu_usage_backfill_jobs` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `range_start` DATETIME(3) NOT NULL,
  `range_end` DATETIME(3) NOT NULL,
  `granularity` VARCHAR(16) NOT NULL DEFAULT 'all',
  `status` VARCHAR(32) NOT NULL,
  `next_chunk_start` DATETIME(3) NOT NULL,
  `chunks_total` INT NOT NULL,
  `chunks_done` INT NOT NULL DEFAULT 0,
  `error` TEXT NULL,
  `created_at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  `updated_at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  `started_at` DATETIME(3) NULL,
  `finished_at` DATETIME(3) NULL,
  PRIMARY KEY (`id`),
  KEY `idx_backfill_status` (`status`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- m20261129_000008_create_gpu_usage_retention_horizons: how far retention
-- has deleted each table.
CREATE TABLE IF NOT EXISTS `gpu_usage_retention_horizons` (
  `table_name` VARCHAR(64) NOT NULL,
  `deleted_before` DATETIME(3) NOT NULL,
  `updated_at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (`table_name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- m20261201_000009_create_gpu_usage_worker_sessions: intervals GPU workers
-- were up and billable (capacity).
CREATE TABLE IF NOT EXISTS `gpu_usage_worker_sessions` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `worker_id` VARCHAR(255) NOT NULL,
  `endpoint` VARCHAR(255) NOT NULL,
  `spec_name` VARCHAR(255) NULL,
  `gpu_type` VARCHAR(100) NULL,
  `gpu_count` INT NOT NULL,
  `started_at` DATETIME(3) NOT NULL,
  `ended_at` DATETIME(3) NULL,
  `last_seen` DATETIME(3) NOT NULL,
  `counted_until` DATETIME(3) NOT NULL,
  `created_at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  `updated_at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (`id`),
  UNIQUE KEY `uk_worker_started` (`worker_id`, `started_at`),
  KEY `idx_sessions_started_at` (`started_at`),
  KEY `idx_sessions_counted_until` (`counted_until`),
  KEY `idx_sessions_ended_at` (`ended_at`),
  KEY `idx_sessions_endpoint` (`endpoint`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The migration CLI's bookkeeping table, as sea-orm-migration 2.0 creates it
-- (no table options: it takes the database's defaults, as the CLI's does).
CREATE TABLE IF NOT EXISTS `seaql_migrations` (
  `version` VARCHAR(255) NOT NULL,
  `applied_at` BIGINT NOT NULL,
  PRIMARY KEY (`version`)
);

INSERT IGNORE INTO `seaql_migrations` (`version`, `applied_at`) VALUES
  ('m20261129_000001_create_gpu_usage_records', UNIX_TIMESTAMP()),
  ('m20261129_000002_create_gpu_usage_statistics_minute', UNIX_TIMESTAMP()),
  ('m20261129_000003_create_gpu_usage_statistics_hourly', UNIX_TIMESTAMP()),
  ('m20261129_000004_create_gpu_usage_statistics_daily', UNIX_TIMESTAMP()),
  ('m20261129_000005_create_gpu_usage_rollup_pending', UNIX_TIMESTAMP()),
  ('m20261129_000006_create_gpu_usage_job_runs', UNIX_TIMESTAMP()),
  ('m20261129_000007_create_gpu_usage_backfill_jobs', UNIX_TIMESTAMP()),
  ('m20261129_000008_create_gpu_usage_retention_horizons', UNIX_TIMESTAMP()),
  ('m20261201_000009_create_gpu_usage_worker_sessions', UNIX_TIMESTAMP()),
  ('m20261201_000010_add_capacity_to_statistics_minute', UNIX_TIMESTAMP()),
  ('m20261201_000011_add_capacity_to_statistics_hourly', UNIX_TIMESTAMP()),
  ('m20261201_000012_add_capacity_to_statistics_daily', UNIX_TIMESTAMP()),
  ('m20261201_000013_add_duration_index_to_records', UNIX_TIMESTAMP());
