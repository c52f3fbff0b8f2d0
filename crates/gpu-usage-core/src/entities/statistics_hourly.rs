statistics_entity! {
    /// One hour of one scope (`gpu_usage_statistics_hourly`).
    table = "gpu_usage_statistics_hourly",
    bucket = DateTimeUtc,
    {
        pub peak_minute: Option<DateTimeUtc>,
        #[sea_orm(column_type = "Decimal(Some((16, 6)))", nullable)]
        pub peak_gpu_hours: Option<Decimal>,
        #[sea_orm(column_type = "Decimal(Some((16, 6)))")]
        pub available_gpu_hours: Decimal,
    }
}
