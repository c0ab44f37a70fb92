//! The webhook delivery log: every delivery to every webhook endpoint and what became
//! of it, for support ("did Stripe send it, and what did we do?").
//!
//! A delivery is answered first and logged after: rows go to a writer task that inserts
//! whatever has queued up in one statement, so the log costs a webhook no round trip.
//! Unverified deliveries (anyone can send them) are logged without event id, type or
//! payload, and at most [`UNVERIFIED_PER_HOUR`] per workspace and hour and
//! [`UNVERIFIED_PER_CLIENT_HOUR`] per client address and hour, per instance (the
//! workspace in a URL is the sender's to choose; its address is not).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Utc};
use roampay_projections::webhook_deliveries::{self, Delivery};
use roampay_projections::Db;
use tokio::sync::{mpsc, oneshot};

/// Unverified deliveries logged per workspace (or per unknown workspace) and hour.
pub const UNVERIFIED_PER_HOUR: u32 = 100;

/// Unverified deliveries logged per client address and hour: twice a workspace's, so a
/// sender that spreads its noise over made-up workspaces still adds at most this many
/// rows (and the webhook routes' rate limit slows it down before that).
pub const UNVERIFIED_PER_CLIENT_HOUR: u32 = 2 * UNVERIFIED_PER_HOUR;

/// Rows written in one statement at most.
const BATCH: usize = 500;

/// How long the writer lets rows gather before it writes them: fewer, larger
/// transactions (each commit is a flush to disk) for a log read by people.
const GATHER: std::time::Duration = std::time::Duration::from_millis(50);

/// Rows waiting for the writer at most; past it (the store far slower than the
/// webhooks) a row is dropped and counted rather than held in memory.
const QUEUE: usize = 20_000;

/// Workspaces whose unverified deliveries are counted apart per hour; past it, any other
/// workspace's share the unknown workspace's allowance (ids in URLs are the sender's to
/// choose).
const NOISE_KEYS: usize = 10_000;

/// The endpoint a delivery came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Workspace,
    Shared,
    Connect,
    Billing,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Workspace => "workspace",
            Self::Shared => "shared",
            Self::Connect => "connect",
            Self::Billing => "billing",
        }
    }
}

/// What processing learnt of a delivery, filled in as it goes: only what is trustworthy
/// (the workspace a URL names, or one a verified event names; ids once verified).
#[derive(Debug, Default)]
pub struct Seen {
    pub workspace_id: Option<String>,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    /// The signature matched: the body is Stripe's.
    pub verified: bool,
    /// The client address the delivery came from (caps unverified noise per sender).
    pub client: Option<std::net::IpAddr>,
}

enum Msg {
    Row(Box<Delivery>),
    Flush(oneshot::Sender<()>),
}

pub struct DeliveryLog {
    /// The event store's database; the log's own is opened from it on first use.
    db: Db,
    log: std::sync::Arc<tokio::sync::OnceCell<Db>>,
    /// Off when the retention is zero: nothing is kept.
    on: bool,
    sender: OnceLock<mpsc::Sender<Msg>>,
    noise: Mutex<Noise>,
}

/// Unverified deliveries counted in the current hour, per workspace and per client.
#[derive(Default)]
struct Noise {
    hour: i64,
    workspaces: HashMap<Option<String>, u32>,
    clients: HashMap<Option<std::net::IpAddr>, u32>,
}

/// One more in `counts` under `key` (past [`NOISE_KEYS`] keys, under the shared `None`);
/// whether the count is still within `cap`.
fn count_within<K: std::hash::Hash + Eq + Clone>(
    counts: &mut HashMap<Option<K>, u32>,
    key: &Option<K>,
    cap: u32,
) -> bool {
    let key = if counts.len() < NOISE_KEYS || counts.contains_key(key) {
        key.clone()
    } else {
        None
    };
    let n = counts.entry(key).or_insert(0);
    *n = n.saturating_add(1);
    *n <= cap
}

impl DeliveryLog {
    /// Logs a delivery with its answer (after the answer is given).
    pub fn answered(
        &self,
        endpoint: Endpoint,
        seen: Seen,
        answer: &Result<super::WebhookOutcome, super::WebhookRefusal>,
        body: &[u8],
        meta: &crate::infra::store::Metadata,
        at: DateTime<Utc>,
    ) {
        let (outcome, code) = match answer {
            Ok(o) => (o.as_str(), None),
            Err(r) => ("refused", Some(r.code())),
        };
        self.record(endpoint, seen, outcome, code, &meta.request_id, body, at);
    }

    /// Deletes the deliveries received before `cutoff`, in batches; how many went.
    pub async fn prune(&self, cutoff: DateTime<Utc>) -> Result<u64, sqlx::Error> {
        const PER_BATCH: i64 = 10_000;
        if !self.on {
            return Ok(0);
        }
        let db = self.db().await?;
        let mut total = 0;
        loop {
            let n = webhook_deliveries::prune(db, cutoff, PER_BATCH).await?;
            total += n;
            if n < PER_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    pub fn new(db: Db, on: bool) -> Self {
        Self {
            db,
            log: std::sync::Arc::new(tokio::sync::OnceCell::new()),
            on,
            sender: OnceLock::new(),
            noise: Mutex::new(Noise::default()),
        }
    }

    /// The log's database (see [`webhook_deliveries::open`]).
    pub async fn db(&self) -> Result<&Db, sqlx::Error> {
        self.log
            .get_or_try_init(|| webhook_deliveries::open(&self.db))
            .await
    }

    /// The writer, started with the first delivery (inside the runtime).
    fn sender(&self) -> &mpsc::Sender<Msg> {
        self.sender.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(write_loop(self.db.clone(), self.log.clone(), rx));
            tx
        })
    }

    /// Logs a delivery (an unverified one only while its workspace's hourly allowance
    /// lasts). `payload` is kept only when the delivery was verified.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        endpoint: Endpoint,
        seen: Seen,
        outcome: &'static str,
        code: Option<&'static str>,
        request_id: &str,
        payload: &[u8],
        at: DateTime<Utc>,
    ) {
        if !self.on {
            return;
        }
        if !seen.verified && !self.allow_unverified(&seen, at) {
            crate::metrics::delivery_unlogged();
            return;
        }
        // Whatever a sender put in (a NUL included) must not make the store refuse the
        // row: the writer inserts many rows at once.
        let text = webhook_deliveries::storable;
        let row = Delivery {
            id: uuid::Uuid::now_v7().to_string(),
            received_at: at,
            endpoint: endpoint.as_str().to_string(),
            workspace_id: seen.workspace_id.map(text),
            event_id: seen.event_id.filter(|_| seen.verified).map(text),
            event_type: seen.event_type.filter(|_| seen.verified).map(text),
            outcome: outcome.to_string(),
            code: code.map(str::to_string),
            request_id: request_id.to_string(),
            payload: seen
                .verified
                .then(|| String::from_utf8_lossy(payload).into_owned()),
        };
        if self.sender().try_send(Msg::Row(Box::new(row))).is_err() {
            crate::metrics::delivery_log_dropped("queue_full", 1);
        }
    }

    fn allow_unverified(&self, seen: &Seen, at: DateTime<Utc>) -> bool {
        let hour = at.timestamp() / 3600;
        let mut noise = self.noise.lock().expect("delivery log");
        if noise.hour != hour {
            *noise = Noise {
                hour,
                ..Noise::default()
            };
        }
        // Both count, whichever refuses: a sender spreading over made-up workspaces
        // meets its own address's cap.
        let by_client = count_within(&mut noise.clients, &seen.client, UNVERIFIED_PER_CLIENT_HOUR);
        let by_workspace = count_within(
            &mut noise.workspaces,
            &seen.workspace_id,
            UNVERIFIED_PER_HOUR,
        );
        by_client && by_workspace
    }

    /// Waits until every delivery logged so far is written (support reads its own
    /// deliveries; tests read a whole run).
    pub async fn flush(&self) {
        if !self.on {
            return;
        }
        let (done, wait) = oneshot::channel();
        if self.sender().send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_loop(
    main: Db,
    log: std::sync::Arc<tokio::sync::OnceCell<Db>>,
    mut rx: mpsc::Receiver<Msg>,
) {
    let db = loop {
        match log
            .get_or_try_init(|| webhook_deliveries::open(&main))
            .await
        {
            Ok(db) => break db.clone(),
            Err(e) => {
                tracing::error!(error = %e, "the webhook delivery log could not be opened; trying again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    };
    let mut rows: Vec<Delivery> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        if matches!(first, Msg::Row(_)) {
            tokio::time::sleep(GATHER).await;
        }
        let mut next = Some(first);
        // Everything queued while the last batch was written goes in this one.
        while let Some(msg) = next.take() {
            match msg {
                Msg::Row(mut r) => {
                    r.payload = r
                        .payload
                        .and_then(|p| webhook_deliveries::scrubbed(&p))
                        .map(webhook_deliveries::storable);
                    rows.push(*r)
                }
                Msg::Flush(done) => waiting.push(done),
            }
            if rows.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        write(&db, &rows).await;
        rows.clear();
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

/// The batch in one statement; when the store refuses it for its data, row by row, so
/// that a row it cannot take costs no other row its place. A store that is away gets
/// three tries; then the rows are dropped with an error in the log (the deliveries
/// themselves were answered and their effects recorded as events).
async fn write(db: &Db, rows: &[Delivery]) {
    for attempt in 1..=3u64 {
        match webhook_deliveries::insert(db, rows).await {
            Ok(()) => return,
            Err(sqlx::Error::Database(e)) => {
                tracing::warn!(error = %e, rows = rows.len(), "the store refused a batch of webhook deliveries; writing them one by one");
                return write_each(db, rows).await;
            }
            Err(e) if attempt == 3 => {
                tracing::error!(error = %e, rows = rows.len(), "webhook deliveries could not be logged");
                crate::metrics::delivery_log_dropped("store_failed", rows.len());
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "writing webhook deliveries failed; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
            }
        }
    }
}

async fn write_each(db: &Db, rows: &[Delivery]) {
    for row in rows {
        if let Err(e) = webhook_deliveries::insert_one(db, row).await {
            tracing::error!(error = %e, delivery = %row.id, request_id = %row.request_id, "a webhook delivery could not be logged");
            crate::metrics::delivery_log_dropped("store_failed", 1);
        }
    }
}
