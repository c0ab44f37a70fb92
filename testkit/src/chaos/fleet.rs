//! roampay instances of a chaos run: `roampay serve` children on one PostgreSQL
//! database, killed with SIGKILL and started again; where each one listens now.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `roampay` binary the instances run: set once by the test or benchmark that
/// starts a fleet (Cargo tells it, `env!("CARGO_BIN_EXE_roampay")`).
static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Which `roampay` binary fleets run (the first call decides).
pub fn use_binary(path: impl Into<PathBuf>) {
    let _ = BINARY.set(path.into());
}

/// The binary set by [`use_binary`].
pub fn binary() -> &'static PathBuf {
    BINARY
        .get()
        .expect("roampay_testkit::chaos::fleet::use_binary(env!(\"CARGO_BIN_EXE_roampay\")) first")
}

pub const JWT: &str = "chaos-jwt-secret-at-least-32-bytes-long!";
/// 32 zero-free bytes, base64: every instance decrypts what another encrypted.
pub const MASTER_KEY: &str = "Y2hhb3MtbWFzdGVyLWtleS0zMi1ieXRlcy1sb25nISE=";

struct Slot {
    child: Option<Child>,
    base: Option<String>,
}

/// The instances, by slot.
#[derive(Clone)]
pub struct Fleet {
    slots: Arc<Vec<Mutex<Slot>>>,
    env: Arc<Vec<(String, String)>>,
    /// Data directories and logs; removed at the end unless kept.
    dir: Arc<PathBuf>,
    keep: Arc<AtomicBool>,
}

impl Fleet {
    /// Starts `n` instances one after the other (the first migrates the database).
    pub fn start(n: usize, database_url: &str, stripe: &str, extra: &[(&str, &str)]) -> Fleet {
        let mut env: Vec<(String, String)> = [
            ("DATABASE_URL", database_url),
            ("STRIPE_API_BASE", stripe),
            ("ROAMPAY_BIND", "127.0.0.1:0"),
            ("ROAMPAY_JWT_SECRET", JWT),
            ("ROAMPAY_MASTER_KEY", MASTER_KEY),
            ("ROAMPAY_RATE_LIMIT_PER_MIN", "1000000"),
            ("ROAMPAY_MAX_CONNECTIONS_PER_CLIENT", "100000"),
            ("ROAMPAY_MAX_PENDING_GUEST_INTENTS", "100000"),
            ("RUST_LOG", "warn"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let fleet = Fleet {
            slots: Arc::new(
                (0..n)
                    .map(|_| {
                        Mutex::new(Slot {
                            child: None,
                            base: None,
                        })
                    })
                    .collect(),
            ),
            env: Arc::new(env),
            dir: Arc::new(tempfile::tempdir().unwrap().keep()),
            keep: Arc::new(AtomicBool::new(false)),
        };
        for i in 0..n {
            fleet.launch(i);
        }
        fleet
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Where the logs of the instances are.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.to_path_buf()
    }

    /// Leaves the logs (and data directories) in place after the run.
    pub fn keep_logs(&self) {
        self.keep.store(true, Ordering::SeqCst);
    }

    /// Starts the instance of `slot` and waits until it listens.
    pub fn launch(&self, slot: usize) {
        let mut s = self.slots[slot].lock().unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("roampay-{slot}.log")))
            .unwrap();
        // `ROAMPAY_CHAOS_WRAP=heaptrack` (say) runs each instance under that tool.
        let mut cmd = match std::env::var("ROAMPAY_CHAOS_WRAP") {
            Ok(tool) if !tool.is_empty() => {
                let mut c = Command::new(tool);
                c.arg(binary());
                c
            }
            _ => Command::new(binary()),
        };
        cmd.arg("serve")
            .env("ROAMPAY_DATA_DIR", self.dir.join(format!("data-{slot}")))
            .stdout(Stdio::piped())
            .stderr(log);
        for (k, v) in self.env.iter() {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("roampay binary");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // The first line roampay prints says where it listens (a wrapper may print first).
        let mut line = String::new();
        while !line.starts_with("roampay ") {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("roampay ended before listening (log in {:?})", self.dir);
            }
        }
        let base = line
            .split_whitespace()
            .nth(3)
            .unwrap_or_else(|| panic!("listening line, got {line:?} (log in {:?})", self.dir))
            .to_string();
        // Whatever else it prints is read and dropped, so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        s.child = Some(child);
        s.base = Some(base);
    }

    /// SIGKILL, no goodbye: the instance dies wherever it was.
    pub fn kill(&self, slot: usize) {
        let mut s = self.slots[slot].lock().unwrap();
        s.base = None;
        if let Some(mut c) = s.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn kill_all(&self) {
        for i in 0..self.len() {
            self.kill(i);
        }
    }

    /// The address of a live instance (`n` picks which, modulo the live ones).
    pub fn base(&self, n: usize) -> Option<String> {
        let live: Vec<String> = self
            .slots
            .iter()
            .filter_map(|s| s.lock().unwrap().base.clone())
            .collect();
        (!live.is_empty()).then(|| live[n % live.len()].clone())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if Arc::strong_count(&self.slots) == 1 {
            self.kill_all();
            if !self.keep.load(Ordering::SeqCst) {
                let _ = std::fs::remove_dir_all(&*self.dir);
            }
        }
    }
}

/// Waits for `GET /readyz` on `base`.
pub async fn ready(http: &reqwest::Client, base: &str) -> bool {
    for _ in 0..100 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
