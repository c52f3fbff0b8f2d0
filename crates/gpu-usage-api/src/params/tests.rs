use super::*;

fn api() -> ApiSettings {
    gpu_usage_core::settings::Settings::load_with(&[])
        .unwrap()
        .api
}

/// Parameters as a handler receives them, from the query string `q`.
fn query<T: serde::de::DeserializeOwned>(q: &str) -> T {
    actix_web::web::Query::<T>::from_query(q)
        .unwrap()
        .into_inner()
}

fn now() -> DateTime<Utc> {
    parse_utc("now", "2026-01-02T12:34:56Z").unwrap()
}

#[test]
fn defaults_apply_only_to_absent_values() {
    let (q, f) = StatsParams::default()
        .parse(Granularity::Hourly, now(), &api())
        .unwrap();
    assert_eq!(q.range.end(), now());
    assert_eq!(q.range.duration(), TimeDelta::hours(24));
    assert_eq!(q.scope, ScopeFilter::global());
    assert_eq!(q.page.limit, 5000);
    assert_eq!(f, None);
    // An empty value is not "absent": refused, naming the parameter.
    let p = StatsParams {
        scope_value: Some(String::new()),
        ..Default::default()
    };
    assert!(p.parse(Granularity::Minute, now(), &api()).is_err());
    for bad in [
        "scope_type=worker",
        "scope_value=x",
        "start_time=yesterday",
        "start_time=2026-01-01T00:00:00",
        "limit=0",
        "limit=50001",
        "limit=ten",
        "format=xml",
        "start_time=2026-01-02T00:00:00Z&end_time=2026-01-01T00:00:00Z",
        "start_time=2024-01-01T00:00:00Z&end_time=2026-01-01T00:00:00Z",
    ] {
        assert!(
            matches!(
                query::<StatsParams>(bad).parse(Granularity::Daily, now(), &api()),
                Err(DomainError::Invalid { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn unencoded_plus_offsets_are_repaired() {
    let t = time("t", Some("2026-01-01T01:00:00 01:00".into()))
        .unwrap()
        .unwrap();
    assert_eq!(t, parse_utc("t", "2026-01-01T00:00:00Z").unwrap());
    assert!(time("t", Some("2026-01-01 00:00:00".into())).is_err());
}

#[test]
fn aggregate_levels_and_merging() {
    let p = AggregateParams {
        granularity: Some("day".into()),
        ..Default::default()
    };
    assert_eq!(p.parse(now(), &api()).unwrap().0, Levels::Daily);
    let (all, r) = AggregateParams::default().parse(now(), &api()).unwrap();
    assert_eq!(all, Levels::All);
    assert_eq!(r.duration(), TimeDelta::hours(24));
    assert!(
        AggregateParams {
            granularity: Some("week".into()),
            ..Default::default()
        }
        .parse(now(), &api())
        .is_err()
    );
    let merged = AggregateParams {
        granularity: Some("minute".into()),
        ..Default::default()
    }
    .merge(Some(AggregateParams {
        start_time: Some("x".into()),
        ..Default::default()
    }))
    .unwrap();
    assert_eq!(merged.start_time, Some("x".into()));
    assert!(
        AggregateParams {
            granularity: Some("minute".into()),
            ..Default::default()
        }
        .merge(Some(AggregateParams {
            granularity: Some("hourly".into()),
            ..Default::default()
        }))
        .is_err()
    );
}

#[test]
fn trigger_bodies() {
    assert!(trigger_body::<BackfillParams>(b"").unwrap().is_none());
    assert!(trigger_body::<BackfillParams>(b" null ").unwrap().is_none());
    assert!(trigger_body::<BackfillParams>(b"{}").unwrap().is_some());
    assert!(trigger_body::<BackfillParams>(b"[1]").is_err());
    assert!(trigger_body::<BackfillParams>(b"{\"nope\":1}").is_err());
    assert!(trigger_body::<BackfillParams>(b"{").is_err());
}

#[test]
fn backfill_needs_both_times_or_neither() {
    assert_eq!(BackfillParams::default().parse(&api()).unwrap(), None);
    assert!(
        BackfillParams {
            start_time: Some("2026-01-01T00:00:00Z".into()),
            ..Default::default()
        }
        .parse(&api())
        .is_err()
    );
}

#[test]
fn empty_values_are_refused_naming_the_parameter() {
    // `+` is a space in a query string.
    for (field, q) in [
        ("limit", "limit="),
        ("start_time", "start_time="),
        ("scope_type", "scope_type=+"),
        ("cursor", "cursor="),
    ] {
        let params: StatsParams = query(q);
        match params.parse(Granularity::Hourly, now(), &api()) {
            Err(DomainError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn the_original_pages_backfill_knobs_are_accepted() {
    let p = BackfillParams {
        batch_size: Some("1000".into()),
        max_tasks: Some("0".into()),
        ..Default::default()
    };
    assert_eq!(p.parse(&api()).unwrap(), None);
    let bad = BackfillParams {
        batch_size: Some("0".into()),
        ..Default::default()
    };
    assert!(bad.parse(&api()).is_err());
}
