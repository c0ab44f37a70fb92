//! The documentation is checked against the code: the shell commands in the README and
//! the guides run as written against a real server, the make targets the README names
//! exist, and the runbook lists exactly the error codes the code can return.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fake_stripe::FakeStripe;
use crate::support::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Fenced blocks of `lang` (```lang … ```).
fn blocks(md: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in md.lines() {
        match &mut current {
            None if line.trim_start() == format!("```{lang}") => current = Some(String::new()),
            Some(_) if line.trim_start() == "```" => out.push(current.take().unwrap()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    out
}

/// Files whose `sh` blocks are run, in this order, each file in one shell.
const RUNNABLE: [&str; 4] = [
    "README.md",
    "docs/onboarding.md",
    "docs/runbook.md",
    "docs/architecture.md",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_commands_run_as_written() {
    let store = Store::fresh(Backend::Sqlite).await;
    let (mock, _fake) = FakeStripe::start().await;
    let server = Server::start(&store, ServerOptions::new(&mock)).await;

    // `make run` leaves the binary at ./target/debug/roampay; the guides call it
    // `roampay` (on the PATH of whoever runs them).
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_roampay"));
    let cwd = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cwd.path().join("target/debug")).unwrap();
    std::os::unix::fs::symlink(&bin, cwd.path().join("target/debug/roampay")).unwrap();
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let mut ran = 0;
    for file in RUNNABLE {
        let script = blocks(&read(file), "sh").join("\n");
        if script.trim().is_empty() {
            continue;
        }
        ran += script.lines().filter(|l| !l.trim().is_empty()).count();
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(cwd.path())
            .env_clear()
            .env("PATH", &path)
            .env("HOME", cwd.path())
            .env("ROAMPAY_URL", &server.base)
            .env("WORKSPACE_ID", "ws-docs")
            .env("STRIPE_PUBLISHABLE_KEY", "pk_test_51HxDocsPublishable")
            .env("STRIPE_SECRET_KEY", "rk_test_51HxDocsRestrictedKey")
            .env("STRIPE_WEBHOOK_SECRET", "whsec_DocsEndpointSecret")
            .env("DATABASE_URL", &store.url)
            .env("ROAMPAY_DATA_DIR", store.data_dir())
            .env("ROAMPAY_JWT_SECRET", JWT_SECRET)
            .env("ROAMPAY_MASTER_KEY", MASTER_KEY)
            .env("STRIPE_API_BASE", mock.uri())
            .env("RUST_LOG", "warn")
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "the commands of {file} failed:\n{script}\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        ran >= 8,
        "only {ran} command lines found: the test would prove little"
    );
}

#[test]
fn the_make_targets_the_readme_names_exist() {
    let readme = read("README.md");
    let mut targets = BTreeSet::new();
    for block in blocks(&readme, "console")
        .into_iter()
        .chain(blocks(&readme, "sh"))
    {
        for line in block.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            for pair in words.windows(2) {
                if pair[0] == "make" && !pair[1].starts_with('#') {
                    targets.insert(pair[1].to_string());
                }
            }
        }
    }
    assert!(
        targets.contains("run") && targets.contains("test"),
        "{targets:?}"
    );
    for t in &targets {
        let out = Command::new("make")
            .args(["-n", t])
            .current_dir(root())
            .output()
            .expect("make");
        assert!(
            out.status.success(),
            "make {t}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Error codes the code returns directly: ApiError constructors, field errors, webhook
/// refusals and credential failures.
fn codes_in_code() -> BTreeSet<String> {
    let patterns = [
        r#"(?:ApiError|Self)::(?:new|bad_request|not_found|conflict|unavailable)\(\s*(?:[\w:]*StatusCode::\w+,\s*|status,\s*)?"([a-z_]+)""#,
        r#"WebhookRefusal::\w+ => "([a-z_]+)""#,
        r#"FieldError::new\(\s*[^,]+,\s*"([a-z_]+)""#,
        r#"Refusal::new\(\s*StatusCode::\w+,\s*"([a-z_]+)""#,
        r#"refuse\(\s*StatusCode::\w+,\s*"([a-z_]+)""#,
        r#"\bbad\(\s*"([a-z_]+)"\s*\)"#,
        r#"code:\s*"([a-z_]+)""#,
    ]
    .map(|p| regex::Regex::new(p).unwrap());
    let mut out = BTreeSet::new();
    for file in rust_files(&root().join("src")) {
        if file.ends_with("tests.rs") || file.ends_with("testing.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for p in &patterns {
            for c in p.captures_iter(&text) {
                out.insert(c[1].to_string());
            }
        }
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

#[test]
fn the_runbook_lists_exactly_the_codes_of_the_code() {
    let runbook = read("docs/runbook.md");
    // The first cell of every table row that starts with a code.
    let listed: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect();
    let in_code = codes_in_code();
    assert!(in_code.len() >= 40, "the scan found only {in_code:?}");
    let missing: Vec<_> = in_code.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "codes missing from docs/runbook.md: {missing:?}"
    );

    // Every listed code is a literal somewhere in the code (codes reached through a
    // variable included), so the runbook invents none.
    let mut literals = String::new();
    for dir in ["src", "events/src"] {
        for f in rust_files(&root().join(dir)) {
            literals.push_str(&std::fs::read_to_string(f).unwrap());
        }
    }
    let invented: Vec<_> = listed
        .iter()
        .filter(|c| !literals.contains(&format!("\"{c}\"")))
        .collect();
    assert!(
        invented.is_empty(),
        "docs/runbook.md lists codes the code never uses: {invented:?}"
    );
    for status in roampay_events::HealthStatus::ALL {
        assert!(
            listed.contains(status.as_str()),
            "health state {}",
            status.as_str()
        );
    }
}

/// `make demo`'s script runs the whole story as docs/quickstart.md tells it, and says
/// each step.
#[test]
fn the_demo_runs_the_whole_story() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("ROAMPAY_LOCALSTRIPE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/localstripe"))
        .with_file_name("python");
    let out = Command::new(root.join("scripts/demo.sh"))
        .env("ROAMPAY_BIN", env!("CARGO_BIN_EXE_roampay"))
        .env("LOCALSTRIPE_PYTHON", &python)
        .env_remove("ROAMPAY_JWT_SECRET")
        .output()
        .expect("run scripts/demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps = stdout.lines().filter(|l| l.starts_with("== ")).count();
    assert!(steps >= 10, "{stdout}");
    for expected in [
        "\"health\":\"valid\"",
        "\"status\":\"requires_capture\"",
        "\"status\":\"authorized\"",
        "\"status\":\"completed\",\"captured_amount_cents\":3210",
        "\"status\":\"succeeded\",\"amount_cents\":500",
        "RefundSucceeded",
        "\"credential_health\":\"valid\"",
    ] {
        assert!(stdout.contains(expected), "{expected} missing:\n{stdout}");
    }
    let quickstart = read("docs/quickstart.md");
    for step in [
        "ocpi-config",
        "locations/",
        "create-payment-intent",
        "/confirm",
        "/start",
        "/complete",
        "/refunds",
        "/api/support/audit",
        "payment-health",
        "stripe listen --forward-to",
    ] {
        assert!(quickstart.contains(step), "docs/quickstart.md tells {step}");
    }
}
