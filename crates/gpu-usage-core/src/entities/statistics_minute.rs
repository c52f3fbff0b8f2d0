statistics_entity! {
    /// One minute of one scope (`gpu_usage_statistics_minute`).
    table = "gpu_usage_statistics_minute",
    bucket = DateTimeUtc,
    {
        #[sea_orm(column_type = "Decimal(Some((18, 3)))")]
        pub total_gpu_seconds: Decimal,
        #[sea_orm(column_type = "Decimal(Some((18, 3)))")]
        pub available_gpu_seconds: Decimal,
        #[sea_orm(column_type = "Decimal(Some((16, 6)))")]
        pub available_gpu_hours: Decimal,
    }
}
