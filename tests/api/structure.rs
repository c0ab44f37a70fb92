//! The layering DESIGN.md §13 asks for, checked on the source: aggregates decide from
//! their state and the command alone (no services, no gateway or vault in reach).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_aggregate_can_reach_stripe_or_the_vault() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    let mut aggregates = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        if !text.contains("impl Aggregate for ") {
            continue;
        }
        aggregates += 1;
        let shown = file.strip_prefix(&src).unwrap().display().to_string();
        assert!(
            text.contains("type Services = ();"),
            "{shown}: an aggregate with services"
        );
        // The aggregate's module (its folder, when it has one) names no gateway.
        let module: Vec<&PathBuf> = match file.parent().filter(|d| *d != src) {
            Some(dir) => files.iter().filter(|f| f.starts_with(dir)).collect(),
            None => vec![file],
        };
        for f in module {
            let code = std::fs::read_to_string(f).unwrap();
            let code: String = code
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .to_string();
            let name = f.strip_prefix(&src).unwrap().display();
            if f.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            for gateway in [
                "StripeGateway",
                "SecretVault",
                "BillingGateway",
                "ConnectGateway",
            ] {
                assert!(!code.contains(gateway), "{name} names {gateway}");
            }
        }
    }
    assert!(aggregates >= 7, "found {aggregates} aggregates");
}

/// Each problem+json answer of the OpenAPI description shows an example of its own
/// status and of a code it can carry (not one example for every error).
#[test]
fn every_problem_response_has_an_example_of_its_own() {
    let doc = serde_json::to_value(roampay::http::openapi::document("http://127.0.0.1")).unwrap();
    let codes = roampay::http::openapi::error_codes();
    let mut seen = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                let Some(content) = response["content"].get("application/problem+json") else {
                    continue;
                };
                let example = &content["example"];
                let at = format!("{method} {path} {status}");
                assert_eq!(example["status"].to_string(), *status, "{at}");
                let code = example["code"].as_str().unwrap_or_default();
                assert!(codes.iter().any(|c| c == code), "{at}: {code}");
                seen.insert((status.clone(), code.to_string()));
            }
        }
    }
    for (status, code) in [
        ("401", "unauthenticated"),
        ("400", "invalid_id"),
        ("409", "workspace_payment_not_ready"),
        ("403", "forbidden"),
        ("429", "rate_limited"),
    ] {
        assert!(
            seen.contains(&(status.to_string(), code.to_string())),
            "{status} {code}: {seen:?}"
        );
    }
}

fn folders(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.push(path.clone());
            folders(&path, out);
        }
    }
}

/// Within any folder of `src` (at any depth), no two modules import each other,
/// directly or through a third (an aggregate split over files keeps its parts as its
/// own child modules).
#[test]
fn no_folder_has_an_import_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut circles = vec![];
    let mut dirs = vec![];
    folders(&src, &mut dirs);
    assert!(dirs.iter().any(|d| d.ends_with("domain/charging_intent")));
    for dir in dirs {
        // `domain/charging_intent` is `crate::domain::charging_intent`.
        let folder = dir
            .strip_prefix(&src)
            .unwrap()
            .components()
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .collect::<Vec<_>>()
            .join("::");
        let modules: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|f| f.unwrap().path())
            .filter(|f| f.extension().is_some_and(|e| e == "rs"))
            .filter(|f| f.file_stem().is_some_and(|s| s != "mod"))
            .map(|f| {
                let code = std::fs::read_to_string(&f).unwrap();
                let code = code
                    .split("#[cfg(test)]")
                    .next()
                    .unwrap_or_default()
                    .to_string();
                (f.file_stem().unwrap().to_string_lossy().to_string(), code)
            })
            .collect();
        let uses = |code: &str, other: &str| {
            let word = regex::Regex::new(&format!(
                r"super::{other}\b|crate::{folder}::{other}\b|super::\{{[^}}]*\b{other}\b"
            ))
            .unwrap();
            word.is_match(code)
        };
        let n = modules.len();
        let edge = |a: usize, b: usize| a != b && uses(&modules[a].1, &modules[b].0);
        for a in 0..n {
            for b in 0..n {
                if a < b && edge(a, b) && edge(b, a) {
                    circles.push(format!("{folder}: {} <-> {}", modules[a].0, modules[b].0));
                }
                for c in 0..n {
                    if a < b && a < c && edge(a, b) && edge(b, c) && edge(c, a) {
                        let names = (&modules[a].0, &modules[b].0, &modules[c].0);
                        circles.push(format!(
                            "{folder}: {} -> {} -> {}",
                            names.0, names.1, names.2
                        ));
                    }
                }
            }
        }
    }
    assert!(circles.is_empty(), "{circles:#?}");
}
