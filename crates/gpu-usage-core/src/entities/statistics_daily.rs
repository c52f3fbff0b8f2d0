statistics_entity! {
    /// One UTC day of one scope (`gpu_usage_statistics_daily`).
    table = "gpu_usage_statistics_daily",
    bucket = Date,
    {
        pub peak_hour: Option<DateTimeUtc>,
        #[sea_orm(column_type = "Decimal(Some((16, 6)))", nullable)]
        pub peak_gpu_hours: Option<Decimal>,
        /// NULL in rows written before capacity was known.
        #[sea_orm(column_type = "Decimal(Some((16, 6)))", nullable)]
        pub available_gpu_hours: Option<Decimal>,
    }
}
