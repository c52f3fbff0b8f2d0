//! The domain crate has no HTTP in it (docs/ARCHITECTURE.md): neither
//! actix-web nor any other HTTP server or client is among its dependencies,
//! direct or transitive, and its sources do not use one.
//!
//! `scripts/test.sh` checks the same with `cargo tree -p gpu-usage-core -e
//! normal -i actix-web`; this test needs no cargo and reads `Cargo.lock`,
//! whose dependency lists cover every feature enabled anywhere in the
//! workspace (a superset of the real graph, so a pass here is conclusive).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Crates that would mean HTTP in the domain.
const FORBIDDEN: [&str; 9] = [
    "actix-web",
    "actix-http",
    "actix-server",
    "awc",
    "axum",
    "hyper",
    "reqwest",
    "warp",
    "tower-http",
];

struct Package {
    name: String,
    version: String,
    /// `name` or `name version` (Cargo.lock's spelling).
    dependencies: Vec<String>,
}

fn parse_lock(lock: &str) -> Vec<Package> {
    let mut packages = Vec::new();
    let mut current: Option<Package> = None;
    let mut in_deps = false;
    for line in lock.lines() {
        let line = line.trim();
        if line == "[[package]]" {
            packages.extend(current.take());
            current = Some(Package {
                name: String::new(),
                version: String::new(),
                dependencies: Vec::new(),
            });
            in_deps = false;
            continue;
        }
        let Some(p) = current.as_mut() else { continue };
        if in_deps {
            if line == "]" {
                in_deps = false;
            } else {
                p.dependencies
                    .push(line.trim_end_matches(',').trim_matches('"').to_owned());
            }
        } else if let Some(v) = line.strip_prefix("name = ") {
            p.name = v.trim_matches('"').to_owned();
        } else if let Some(v) = line.strip_prefix("version = ") {
            p.version = v.trim_matches('"').to_owned();
        } else if line == "dependencies = [" {
            in_deps = true;
        } else if line.starts_with("dependencies = [") && line.ends_with(']') {
            // `dependencies = ["a", "b"]` on one line.
            let inner = &line["dependencies = [".len()..line.len() - 1];
            p.dependencies.extend(
                inner
                    .split(',')
                    .map(|d| d.trim().trim_matches('"').to_owned())
                    .filter(|d| !d.is_empty()),
            );
        }
    }
    packages.extend(current);
    packages
}

/// Every package reachable from `root` through Cargo.lock's dependency lists
/// (normal, build and dev dependencies alike), as `name version`.
fn closure(packages: &[Package], root: &str) -> BTreeSet<String> {
    let mut by_name: BTreeMap<&str, Vec<&Package>> = BTreeMap::new();
    for p in packages {
        by_name.entry(p.name.as_str()).or_default().push(p);
    }
    let resolve = |spec: &str| -> &Package {
        let mut parts = spec.split(' ');
        let name = parts.next().unwrap();
        let version = parts.next();
        let candidates = by_name
            .get(name)
            .unwrap_or_else(|| panic!("{spec} is not in Cargo.lock"));
        match version {
            Some(v) => candidates
                .iter()
                .find(|p| p.version == v)
                .unwrap_or_else(|| panic!("{spec} is not in Cargo.lock")),
            None => {
                assert_eq!(candidates.len(), 1, "{spec} is ambiguous");
                candidates[0]
            }
        }
    };
    let mut seen = BTreeSet::new();
    let mut stack = vec![resolve(root)];
    while let Some(p) = stack.pop() {
        if !seen.insert(format!("{} {}", p.name, p.version)) {
            continue;
        }
        for d in &p.dependencies {
            stack.push(resolve(d));
        }
    }
    seen
}

#[test]
fn no_http_crate_in_the_dependency_graph() {
    let lock = std::fs::read_to_string(format!("{ROOT}/Cargo.lock")).unwrap();
    let packages = parse_lock(&lock);
    let reachable = closure(&packages, "gpu-usage-core");
    // Sanity: the walk found the real graph.
    for expected in ["sea-orm", "sqlx-mysql", "chrono", "tokio", "migration"] {
        assert!(
            reachable
                .iter()
                .any(|p| p.split(' ').next() == Some(expected)),
            "{expected} should be reachable from gpu-usage-core"
        );
    }
    let offenders: Vec<&String> = reachable
        .iter()
        .filter(|p| FORBIDDEN.contains(&p.split(' ').next().unwrap()))
        .collect();
    assert!(
        offenders.is_empty(),
        "gpu-usage-core depends on HTTP crates: {offenders:?}"
    );
    // And the check can see HTTP where it is: the api crate has actix-web.
    if packages.iter().any(|p| p.name == "gpu-usage-api") {
        let api = closure(&packages, "gpu-usage-api");
        assert!(
            api.iter().any(|p| p.starts_with("actix-web ")),
            "the api crate should reach actix-web"
        );
    }
}

#[test]
fn manifest_and_sources_do_not_mention_http_frameworks() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    for line in manifest.lines() {
        let name = line.split(['=', '.', ' ']).next().unwrap_or("").trim();
        assert!(
            !FORBIDDEN.contains(&name),
            "crates/gpu-usage-core/Cargo.toml names {name}: {line}"
        );
    }

    let mut stack = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files += 1;
                let source = std::fs::read_to_string(&path).unwrap();
                for needle in [
                    "actix_web",
                    "actix_http",
                    "HttpResponse",
                    "HttpRequest",
                    "hyper::",
                    "axum::",
                    "reqwest::",
                ] {
                    assert!(
                        !source.contains(needle),
                        "{} uses {needle}: HTTP belongs in the api crate",
                        path.display()
                    );
                }
            }
        }
    }
    assert!(files > 5, "only {files} source files found");
}
