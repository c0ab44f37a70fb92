//! The load generator of a chaos run: drivers' journeys (pre-auth, pay, webhooks with
//! duplicates and late deliveries, confirm, start, complete or cancel, refunds) and
//! credential rotations, against whichever instance is alive. Every request that fails
//! without an answer is sent again (to another instance); every 2xx is written in the
//! generator's own ledger with the event it must have left in the log.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::Method;
use roampay::http::auth::JwtAuth;
use secrecy::SecretString;
use serde_json::{json, Value};

use super::fleet::{Fleet, JWT};
use crate::stripe::FakeStripe;

/// Connectors each worker owns per workspace (a worker never races itself).
pub const CONNECTORS: usize = 6;
/// A request is sent again for this long before the generator gives up on it.
const PERSIST: Duration = Duration::from_secs(90);

/// A 2xx answer: the aggregate must hold one of these event types.
#[derive(Debug, Clone)]
pub struct Ack {
    pub what: &'static str,
    pub aggregate_id: String,
    pub any_of: &'static [&'static str],
}

/// The generator's shared state.
pub struct Load {
    http: reqwest::Client,
    fleet: Fleet,
    pub fake: FakeStripe,
    pub workspaces: Vec<String>,
    admin: String,
    sessions: String,
    support: String,
    /// Every webhook signing secret each workspace was given (all verify in the overlap).
    secrets: Mutex<HashMap<String, Vec<String>>>,
    pub acks: Mutex<Vec<Ack>>,
    pub counts: Mutex<BTreeMap<String, u64>>,
    pub stop: AtomicBool,
    /// A pause between a worker's journeys.
    pace: Duration,
    /// Late webhook deliveries still to go.
    late: Mutex<tokio::task::JoinSet<()>>,
}

impl Load {
    pub fn new(fleet: Fleet, fake: FakeStripe, workspaces: usize, pace: Duration) -> Arc<Load> {
        let auth = JwtAuth::new(&SecretString::from(JWT.to_string()), None, None);
        let workspaces: Vec<String> = (0..workspaces).map(|w| format!("ws-chaos-{w}")).collect();
        let day = 24 * 3600;
        Arc::new(Load {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            fleet,
            fake,
            admin: auth.issue(
                "chaos-admin",
                &workspaces,
                "roaming:write roaming:read locations:write",
                day,
            ),
            sessions: auth.issue("chaos-cpo", &workspaces, "sessions:write", day),
            support: auth.issue(
                "chaos-support",
                &workspaces,
                "audit:read refunds:write",
                day,
            ),
            secrets: Mutex::new(HashMap::new()),
            workspaces,
            acks: Mutex::new(Vec::new()),
            counts: Mutex::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
            pace,
            late: Mutex::new(tokio::task::JoinSet::new()),
        })
    }

    pub fn count(&self, what: &str) {
        *self.counts.lock().unwrap().entry(what.into()).or_default() += 1;
    }

    fn ack(&self, what: &'static str, aggregate_id: &str, any_of: &'static [&'static str]) {
        self.count(&format!("2xx {what}"));
        self.acks.lock().unwrap().push(Ack {
            what,
            aggregate_id: aggregate_id.into(),
            any_of,
        });
    }

    /// Sends until an instance answers with something other than a 5xx that says
    /// "try again" (or the generator gives up after [`PERSIST`]: status 0).
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, String)],
        body: Body,
    ) -> (u16, Value) {
        let started = Instant::now();
        let mut n: usize = rand::thread_rng().gen();
        while started.elapsed() < PERSIST {
            n += 1;
            let Some(base) = self.fleet.base(n) else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let mut req = self.http.request(method.clone(), format!("{base}{path}"));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            req = match &body {
                Body::None => req,
                Body::Json(v) => req.json(v),
                Body::Raw(b) => req.body(b.clone()),
            };
            match req.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    // `stripe_error` is an answer; so is `stripe_unavailable` to a pre-auth
                    // (its key answers the same again: `journey` starts a new attempt).
                    // Elsewhere (refunds, confirm) the same key is sent again, as the
                    // runbook says.
                    let preauth = path == "/ocpi/create-payment-intent";
                    let stripe = v["code"] == "stripe_error"
                        || (preauth && v["code"] == "stripe_unavailable");
                    if matches!(status, 500 | 502 | 503 | 504) && !stripe {
                        self.count(&format!("answered {status} {}, sent again", v["code"]));
                    } else {
                        return (status, v);
                    }
                }
                Err(_) => self.count("no answer (instance gone), sent again"),
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        self.count("gave up after retrying");
        (0, Value::Null)
    }

    /// Saves a complete credential set for every workspace and publishes its
    /// locations: one paid and one free per worker, with [`CONNECTORS`] connectors each.
    pub async fn set_up(&self, workers: usize) {
        for (w, ws) in self.workspaces.iter().enumerate() {
            let secret = format!("whsec_Chaos{w}R0");
            self.secrets
                .lock()
                .unwrap()
                .insert(ws.clone(), vec![secret.clone()]);
            let body = json!({"allow_guest_access": true, "stripe": {"publishable_key": "pk_test_51ChaosPublishable",
                "secret_key": format!("sk_test_51Chaos{w}R0"), "webhook_signing_secret": secret}});
            let (s, v) = self.patch_config(ws, body).await;
            assert_eq!(
                (s, &v["stripe"]["health"]["status"]),
                (200, &json!("valid")),
                "{v}"
            );
            for w in 0..workers {
                for (loc, price) in [(location(ws, w, false), 45), (location(ws, w, true), 0)] {
                    let connectors: Vec<Value> = (0..CONNECTORS)
                        .map(|c| json!({"id": c.to_string(), "standard": "IEC_62196_T2", "format": "SOCKET",
                            "power_type": "AC_3_PHASE", "tariff": {"currency": "aud", "price_per_kwh_cents": price, "flat_fee_cents": 0}}))
                        .collect();
                    let body = json!({"name": "Chaos", "address": "1 Main St", "city": "Sydney", "country": "AUS",
                        "coordinates": {"latitude": "0", "longitude": "0"}, "evses": [{"uid": "E", "connectors": connectors}]});
                    let path = format!("/api/workspaces/{ws}/locations/{loc}");
                    let (s, v) = self
                        .send(Method::PUT, &path, Some(&self.admin), &[], Body::Json(body))
                        .await;
                    assert!((200..300).contains(&s), "{s} {v}");
                }
            }
        }
    }

    async fn patch_config(&self, ws: &str, body: Value) -> (u16, Value) {
        let path = format!("/api/permissions/workspace/{ws}/ocpi-config");
        self.send(
            Method::PATCH,
            &path,
            Some(&self.admin),
            &[],
            Body::Json(body),
        )
        .await
    }

    /// Rotates one credential of a random workspace: the secret key (a candidate,
    /// validated, then active) or the webhook signing secret (overlapping).
    pub async fn rotate(&self, n: usize) {
        let w = n % self.workspaces.len();
        let ws = self.workspaces[w].clone();
        let stripe = if n % 2 == 0 {
            json!({"secret_key": format!("sk_test_51Chaos{w}R{n}")})
        } else {
            let secret = format!("whsec_Chaos{w}R{n}");
            // Stripe signs with the new secret from now on: known before it is saved.
            self.secrets
                .lock()
                .unwrap()
                .get_mut(&ws)
                .unwrap()
                .push(secret.clone());
            json!({"webhook_signing_secret": secret})
        };
        let (s, v) = self.patch_config(&ws, json!({ "stripe": stripe })).await;
        if s == 200 {
            let id = v["workspace_id"].as_str().unwrap_or(&ws).to_string();
            self.ack(
                "credential rotation",
                &id,
                &[
                    "WorkspaceStripeCredentialsUpdated",
                    "WorkspaceStripeCandidateSaved",
                ],
            );
        } else {
            self.count(&format!("credential rotation answered {s}"));
        }
    }

    /// One signed delivery of `event` to the workspace's endpoint. Returns the outcome.
    async fn deliver(&self, ws: &str, event: &Value) -> String {
        let body = serde_json::to_vec(event).unwrap();
        let t = chrono::Utc::now().timestamp();
        let signatures: Vec<String> = self.secrets.lock().unwrap()[ws]
            .iter()
            .map(|s| {
                let s = SecretString::from(s.clone());
                format!("v1={}", roampay::infra::stripe::webhook::sign(&s, t, &body))
            })
            .collect();
        let header = format!("t={t},{}", signatures.join(","));
        let path = format!("/ocpi/stripe/webhook/{ws}");
        let (s, v) = self
            .send(
                Method::POST,
                &path,
                None,
                &[("Stripe-Signature", header)],
                Body::Raw(body),
            )
            .await;
        let outcome = if s == 200 {
            v["outcome"].as_str().unwrap_or("?").to_string()
        } else {
            format!("{s} {}", v["code"])
        };
        self.count(&format!("webhook {outcome}"));
        outcome
    }

    /// The event Stripe sends about the PaymentIntent as it is now, delivered once or
    /// twice at once, now or a little later (so after later events: out of order).
    fn webhook(self: &Arc<Self>, ws: &str, intent: &str, kind: &'static str, late: bool) {
        let Some(pi) = self.fake.intent(intent) else {
            return;
        };
        let id = pi["id"].as_str().unwrap_or_default().to_string();
        let event_id = format!("evt_{id}_{}", kind.replace('.', "_"));
        let event = json!({"id": event_id, "object": "event", "type": kind,
            "livemode": false, "created": chrono::Utc::now().timestamp(), "data": {"object": pi}});
        let mut rng = rand::thread_rng();
        let copies = if rng.gen_bool(0.3) { 2 } else { 1 };
        let delay = Duration::from_millis(if late { rng.gen_range(200..2500) } else { 0 });
        for _ in 0..copies {
            let (me, ws, event) = (self.clone(), ws.to_string(), event.clone());
            let charging_intent = pi["metadata"]["charging_intent_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            self.late.lock().unwrap().spawn(async move {
                tokio::time::sleep(delay).await;
                if me.deliver(&ws, &event).await == "applied" {
                    let any_of: &'static [&'static str] = match kind {
                        "payment_intent.amount_capturable_updated" => {
                            &["WorkspacePaymentIntentAuthorizationReceived"]
                        }
                        "payment_intent.succeeded" => &["WorkspaceSessionPaymentCaptured"],
                        _ => &["HoldReleased", "WorkspacePaymentIntentFailed"],
                    };
                    me.ack("webhook applied", &charging_intent, any_of);
                }
            });
        }
    }

    /// How many 2xx answers so far.
    pub fn acknowledged(&self) -> usize {
        self.acks.lock().unwrap().len()
    }

    /// Waits for the late deliveries.
    pub async fn drain(&self) {
        let mut set = std::mem::take(&mut *self.late.lock().unwrap());
        while set.join_next().await.is_some() {}
    }

    /// Journeys until told to stop. `worker` owns its connectors.
    pub async fn drive(self: Arc<Self>, worker: usize) {
        let mut turn = 0usize;
        while !self.stop.load(Ordering::Relaxed) {
            turn += 1;
            let ws = self.workspaces[(worker + turn) % self.workspaces.len()].clone();
            let free = rand::thread_rng().gen_bool(0.05);
            let connector = (turn / self.workspaces.len()) % CONNECTORS;
            self.journey(&ws, &location(&ws, worker, free), connector, free)
                .await;
            tokio::time::sleep(self.pace).await;
        }
    }

    async fn journey(self: &Arc<Self>, ws: &str, location: &str, connector: usize, free: bool) {
        let body = json!({"location_id": location, "evse_uid": "E", "connector_id": connector.to_string()});
        // A pre-auth answered `503 stripe_unavailable` failed for good (its key answers the
        // same again, as the contract says): the driver's app starts a new attempt, with
        // a new key (docs/roaming-web.md). No answer at all: the same key again.
        let (mut s, mut r) = (0, Value::Null);
        for _ in 0..120 {
            let key = uuid::Uuid::now_v7().to_string();
            (s, r) = self
                .send(
                    Method::POST,
                    "/ocpi/create-payment-intent",
                    None,
                    &[("Idempotency-Key", key)],
                    Body::Json(body.clone()),
                )
                .await;
            if r["code"] != "stripe_unavailable" {
                break;
            }
            self.count("pre-auth answered 503 stripe_unavailable: a new attempt, a new key");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // The workspace is taken from the location: the same ids exist in every one.
        if s != 201 {
            self.count(&format!("pre-auth answered {s} {}", r["code"]));
            if s == 409 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            return;
        }
        let intent = r["charging_intent_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ws = r["workspace_id"].as_str().unwrap_or(ws).to_string();
        if free {
            self.ack("pre-auth (free)", &intent, &["FreeSessionAuthorized"]);
            return self.session(&ws, &intent, None).await;
        }
        self.ack("pre-auth", &intent, &["WorkspacePaymentIntentCreated"]);
        let pi = r["payment_intent_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let roll: f64 = rand::thread_rng().gen();
        if roll < 0.08 {
            return self.count("journey abandoned unpaid (the sweep expires it)");
        }
        if roll < 0.15 {
            let path = format!("/ocpi/charging-intents/{intent}/cancel");
            let body = json!({"client_secret": r["client_secret"]});
            let (s, _) = self
                .send(Method::POST, &path, None, &[], Body::Json(body))
                .await;
            if s == 200 {
                self.ack(
                    "guest cancel",
                    &intent,
                    &["HoldReleaseRequested", "HoldReleased"],
                );
            }
            return;
        }
        // The driver's card is accepted in the browser; roampay learns it by webhook,
        // by the confirm call, or both.
        self.fake.authorize(&pi);
        let by_webhook = rand::thread_rng().gen_bool(0.7);
        if by_webhook {
            self.webhook(&ws, &pi, "payment_intent.amount_capturable_updated", false);
        }
        if !by_webhook || rand::thread_rng().gen_bool(0.3) {
            let path = format!("/ocpi/charging-intents/{intent}/confirm");
            let (s, v) = self.send(Method::POST, &path, None, &[], Body::None).await;
            if s == 200 && v["status"] == "authorized" {
                self.ack(
                    "confirm",
                    &intent,
                    &["WorkspacePaymentIntentAuthorizationReceived"],
                );
            }
        }
        if !self.wait_for(&intent, "authorized").await {
            return self.count("journey: never authorized (given up)");
        }
        self.session(&ws, &intent, Some(&pi)).await;
    }

    /// Start and complete, or cancel before starting; then Stripe's word on the hold,
    /// late and sometimes twice, and for some a refund.
    async fn session(self: &Arc<Self>, ws: &str, intent: &str, pi: Option<&str>) {
        let base = format!("/ocpi/charging-intents/{intent}");
        let mut rng_roll: f64 = rand::thread_rng().gen();
        if rng_roll < 0.1 {
            let (s, _) = self
                .send(
                    Method::POST,
                    &format!("{base}/cancel"),
                    Some(&self.sessions),
                    &[],
                    Body::None,
                )
                .await;
            if s == 200 || s == 202 {
                self.ack("cancel", intent, &["HoldReleaseRequested", "HoldReleased"]);
            }
        } else {
            let (s, v) = self
                .send(
                    Method::POST,
                    &format!("{base}/start"),
                    Some(&self.sessions),
                    &[],
                    Body::Json(json!({"ocpi_session_id": format!("S{}", intent.replace('-', ""))})),
                )
                .await;
            if s == 200 {
                self.ack("start", intent, &["ChargingSessionStarted"]);
            } else if v["code"] != "invalid_transition" {
                return self.count(&format!("start answered {s} {}", v["code"]));
            }
            let amount = if pi.is_some() {
                rand::thread_rng().gen_range(0..7000)
            } else {
                0
            };
            let (s, _) = self
                .send(
                    Method::POST,
                    &format!("{base}/complete"),
                    Some(&self.sessions),
                    &[],
                    Body::Json(json!({"final_amount_cents": amount})),
                )
                .await;
            if s == 200 || s == 202 {
                self.ack(
                    "complete",
                    intent,
                    // (a free session completes at once)
                    &[
                        "SessionCompletionRequested",
                        "HoldReleaseRequested",
                        "WorkspaceSessionPaymentCaptured",
                    ],
                );
            }
            rng_roll = rand::thread_rng().gen();
        }
        let Some(pi) = pi else { return };
        // Stripe's events about the hold, some late; and the authorization again, late.
        let settled = self.fake.intent(pi).map(|p| p["status"].clone());
        match settled.as_ref().and_then(Value::as_str) {
            Some("succeeded") => self.webhook(ws, pi, "payment_intent.succeeded", true),
            Some("canceled") => self.webhook(ws, pi, "payment_intent.canceled", true),
            _ => {}
        }
        if rand::thread_rng().gen_bool(0.2) {
            self.webhook(ws, pi, "payment_intent.amount_capturable_updated", true);
        }
        if rng_roll < 0.3 {
            self.refund(intent).await;
        }
    }

    /// Support refunds part of a completed session (the same key sent twice, sometimes).
    async fn refund(&self, intent: &str) {
        if !self.wait_for(intent, "completed").await {
            return;
        }
        let path = format!("/api/support/charging-intents/{intent}/refunds");
        let key = uuid::Uuid::now_v7().to_string();
        let times = if rand::thread_rng().gen_bool(0.3) {
            2
        } else {
            1
        };
        for _ in 0..times {
            let (s, v) = self
                .send(
                    Method::POST,
                    &path,
                    Some(&self.support),
                    &[("Idempotency-Key", key.clone())],
                    Body::Json(json!({"amount_cents": 100, "reason": "requested_by_customer"})),
                )
                .await;
            if s == 201 {
                self.ack("refund", intent, &["RefundRequested"]);
            } else {
                self.count(&format!("refund answered {s} {}", v["code"]));
            }
        }
    }

    /// Polls the intent until it has `status` (or an end that rules it out).
    async fn wait_for(&self, intent: &str, status: &str) -> bool {
        let path = format!("/ocpi/charging-intents/{intent}");
        for _ in 0..200 {
            let (s, v) = self.send(Method::GET, &path, None, &[], Body::None).await;
            if s == 200 && v["status"] == status {
                return true;
            }
            if s == 200 && v["status"] == "completed" && v["captured_amount_cents"] == 0 {
                return false; // nothing captured, nothing to refund
            }
            if matches!(
                v["status"].as_str(),
                Some("cancelled" | "failed" | "expired" | "capture_failed")
            ) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

/// The location of a worker in a workspace (location ids are unique across workspaces).
fn location(ws: &str, worker: usize, free: bool) -> String {
    format!("{}-{ws}-{worker}", if free { "FREE" } else { "LOC" })
}

/// A request body.
enum Body {
    None,
    Json(Value),
    Raw(Vec<u8>),
}
