//! The OpenAPI document matches the routes, the reference page renders
//! from it, probes and request ids work.

use std::collections::BTreeSet;

use gpu_usage_testing::TestDb;
use reqwest::Method;
use serde_json::Value;

use crate::support::{TestApp, both_backends, column, content_type, spawn_app};

/// Every route a client can call, as (method, path template).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/"),
    ("get", "/dashboard"),
    ("get", "/dashboard/app.js"),
    ("get", "/dashboard/app.css"),
    ("get", "/dashboard/vendor/{file}"),
    ("get", "/api/v1/gpu-usage/minute"),
    ("get", "/api/v1/gpu-usage/hourly"),
    ("get", "/api/v1/gpu-usage/daily"),
    ("get", "/api/v1/gpu-usage/scopes"),
    ("get", "/api/v1/gpu-usage/records"),
    ("post", "/api/v1/gpu-usage/records"),
    ("post", "/api/v1/gpu-usage/workers/sessions"),
    ("get", "/api/v1/gpu-usage/workers/sessions"),
    ("post", "/api/v1/gpu-usage/workers/heartbeats"),
    ("post", "/api/v1/gpu-usage/aggregate"),
    ("post", "/api/v1/gpu-usage/backfill"),
    ("get", "/api/v1/gpu-usage/backfill"),
    ("get", "/api/v1/gpu-usage/backfill/{id}"),
    ("get", "/api/v1/gpu-usage/status"),
    ("get", "/api/v1/gpu-usage/whoami"),
    ("get", "/api/v1/gpu-usage/openapi.json"),
    ("get", "/api/v1/gpu-usage/docs"),
];

async fn assert_served(app: &TestApp, documented: &BTreeSet<(String, String)>) {
    for (method, path) in documented {
        let url = format!("{}{}", app.base, path.replace("{id}", "1"));
        let method = if method == "get" {
            Method::GET
        } else {
            Method::POST
        };
        let res = app
            .client
            .request(method.clone(), &url)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body = res.text().await.unwrap();
        assert!(
            !body.contains("\"no_route\""),
            "{method} {path} is documented but not served: {status} {body}"
        );
    }
}

fn assert_refs_resolve(doc: &Value) {
    let mut refs = Vec::new();
    collect_refs(doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("odd $ref {r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref {r}"
        );
    }
}

async fn document_matches_routes(db: TestDb) {
    let app = spawn_app(db).await;
    let doc = app.get_json("/openapi.json").await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "GPU usage accounting API");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                documented.insert((method.to_owned(), path.clone()));
            }
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        documented, expected,
        "documented operations differ from the routes"
    );
    // The library builds the document from the same registration list.
    assert_eq!(
        serde_json::to_value(gpu_usage_api::openapi_document()).unwrap(),
        doc
    );

    // Every documented operation is really served (not the no-route 404).
    assert_served(&app, &documented).await;

    // Parameters and bodies are documented, including the error shape.
    let hourly = &doc["paths"]["/api/v1/gpu-usage/hourly"]["get"];
    let params = column(&hourly["parameters"], "name", Value::as_str);
    for p in [
        "scope_type",
        "scope_value",
        "start_time",
        "end_time",
        "limit",
        "cursor",
        "format",
    ] {
        assert!(params.contains(&p), "hourly lacks {p}: {params:?}");
    }
    assert!(hourly["responses"]["200"]["content"]["text/csv"].is_object());
    assert!(hourly["responses"]["400"]["content"]["application/json"].is_object());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["schemas"]["HourlyRow"]["properties"]["peak_minute"].is_object());
    assert!(doc["paths"]["/api/v1/gpu-usage/records"]["post"]["requestBody"].is_object());
    assert_eq!(
        doc["paths"]["/api/v1/gpu-usage/aggregate"]["post"]["security"],
        serde_json::json!([{"bearer": []}])
    );
    let scope_type = &hourly["parameters"][0];
    assert_eq!(scope_type["name"], "scope_type");
    assert!(
        scope_type.to_string().contains("endpoint"),
        "the values are listed: {scope_type}"
    );

    // Every reference resolves: a reader (or generator) never hits a hole.
    assert_refs_resolve(&doc);
    app.finish().await;
}

async fn reference_page_probes_and_request_ids(db: TestDb) {
    let app = spawn_app(db).await;
    let res = app.get("/docs").await;
    assert_eq!(res.status(), 200);
    assert!(content_type(&res).starts_with("text/html"));
    let html = res.text().await.unwrap();
    assert!(html.contains("fetch(\"openapi.json\")"));
    assert!(
        !html.contains("https://"),
        "the page must not load external assets"
    );

    let res = app.get_outside("/healthz").await;
    assert_eq!(res.status(), 200);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ok");
    let res = app.get_outside("/readyz").await;
    assert_eq!(res.status(), 200);
    let other = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, other, "every request gets its own id");
    // Errors carry one too.
    let res = app.get("/hourly?scope_type=nope").await;
    assert!(res.headers().get("x-request-id").is_some());
    app.finish().await;
}

both_backends!(
    document_matches_routes,
    reference_page_probes_and_request_ids,
);

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}
