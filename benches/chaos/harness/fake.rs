//! The Stripe of a chaos run: PaymentIntents, captures, cancels and refunds as Stripe
//! applies them (idempotency keys honoured), with its own ledger of what it applied per
//! PaymentIntent, and switches for an outage (500s) or a slow Stripe (applied, then
//! answered after roampay's timeout).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// What Stripe did to one PaymentIntent.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// The amount it was created with (the hold once authorized).
    pub amount: i64,
    pub authorized: bool,
    /// Amounts captured (more than one is a double capture).
    pub captures: Vec<i64>,
    pub cancels: u32,
    /// Amounts refunded.
    pub refunds: Vec<i64>,
}

#[derive(Default)]
struct Ledger {
    /// PaymentIntents as Stripe returns them.
    intents: HashMap<String, Value>,
    applied: HashMap<String, Applied>,
    /// Idempotency key → the answer given (Stripe replays it).
    answers: HashMap<String, (u16, Value)>,
    checks: usize,
    unexpected: Vec<String>,
}

/// How Stripe behaves right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weather {
    Fine = 0,
    /// Every call is answered 500 before anything is applied.
    Failing = 1,
    /// Every call is applied, and answered after roampay stopped waiting.
    Slow = 2,
}

#[derive(Clone, Default)]
pub struct FakeStripe {
    ledger: Arc<Mutex<Ledger>>,
    weather: Arc<AtomicU8>,
}

/// How long a slow Stripe takes to answer (roampay is told to wait less).
pub const SLOW: Duration = Duration::from_secs(4);

fn form(req: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect()
}

fn error(status: u16, code: &str) -> (u16, Value) {
    (
        status,
        json!({"error": {"type": "invalid_request_error", "code": code, "message": code}}),
    )
}

impl FakeStripe {
    pub async fn start() -> (MockServer, FakeStripe) {
        let server = MockServer::start().await;
        let fake = FakeStripe::default();
        Mock::given(wiremock::matchers::any())
            .respond_with(fake.clone())
            .mount(&server)
            .await;
        (server, fake)
    }

    pub fn set_weather(&self, w: Weather) {
        self.weather.store(w as u8, Ordering::SeqCst);
    }

    /// The driver's card is accepted in Stripe.js: the hold is placed. Returns the
    /// PaymentIntent, or `None` if it is not waiting for a card.
    pub fn authorize(&self, pi: &str) -> Option<Value> {
        let mut l = self.ledger.lock().unwrap();
        let p = l.intents.get_mut(pi)?;
        if p["status"] != "requires_payment_method" {
            return None;
        }
        p["status"] = json!("requires_capture");
        p["amount_capturable"] = p["amount"].clone();
        let out = p.clone();
        l.applied.entry(pi.to_string()).or_default().authorized = true;
        Some(out)
    }

    /// The PaymentIntent as Stripe holds it now.
    pub fn intent(&self, pi: &str) -> Option<Value> {
        self.ledger.lock().unwrap().intents.get(pi).cloned()
    }

    /// What Stripe applied, per PaymentIntent.
    pub fn applied(&self) -> HashMap<String, Applied> {
        self.ledger.lock().unwrap().applied.clone()
    }

    /// Requests this fake does not know (printed by the report).
    pub fn unexpected(&self) -> Vec<String> {
        self.ledger.lock().unwrap().unexpected.clone()
    }

    fn answer(&self, req: &Request) -> (u16, Value) {
        let path: Vec<&str> = req.url.path().trim_matches('/').split('/').collect();
        let key = req
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(|k| format!("{} {k}", req.url.path()));
        let mut l = self.ledger.lock().unwrap();
        if let Some(done) = key.as_ref().and_then(|k| l.answers.get(k)) {
            return done.clone();
        }
        let f = form(req);
        let answer = match (req.method.as_str(), path.as_slice()) {
            ("POST", ["v1", "payment_intents"]) => create(&mut l, &f),
            ("GET", ["v1", "payment_intents"]) => (
                200,
                json!({"object": "list", "data": [], "has_more": false}),
            ),
            ("GET", ["v1", "payment_intents", id]) => retrieve(&l, id),
            ("POST", ["v1", "payment_intents", id, op]) => settle(&mut l, id, op, &f),
            ("POST", ["v1", "refunds"]) => refund(&mut l, &f),
            ("GET", ["v1", "refunds" | "disputes"]) => {
                let pi = req
                    .url
                    .query_pairs()
                    .find(|(k, _)| k == "payment_intent")
                    .map(|(_, v)| v.to_string());
                let data: Vec<Value> = if path[1] == "refunds" {
                    refunds_of(&l, pi.as_deref())
                } else {
                    vec![]
                };
                (
                    200,
                    json!({"object": "list", "data": data, "has_more": false}),
                )
            }
            ("GET", ["v1", "account"]) => (200, json!({"id": "acct_chaos", "object": "account"})),
            _ => {
                l.unexpected
                    .push(format!("{} {}", req.method, req.url.path()));
                error(404, "resource_missing")
            }
        };
        if let (Some(k), true) = (key, answer.0 < 500) {
            l.answers.insert(k, answer.clone());
        }
        answer
    }
}

impl Respond for FakeStripe {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let weather = self.weather.load(Ordering::SeqCst);
        if weather == Weather::Failing as u8 {
            return ResponseTemplate::new(500)
                .set_body_json(json!({"error": {"type": "api_error", "message": "outage"}}));
        }
        let (status, body) = self.answer(req);
        let reply = ResponseTemplate::new(status).set_body_json(body);
        if weather == Weather::Slow as u8 {
            reply.set_delay(SLOW)
        } else {
            reply
        }
    }
}

fn create(l: &mut Ledger, f: &HashMap<String, String>) -> (u16, Value) {
    let check = f.get("metadata[roampay_purpose]").map(String::as_str) == Some("credential_check");
    let id = if check {
        l.checks += 1;
        format!("pi_check{}", l.checks)
    } else {
        format!("pi_chaos{}", l.intents.len() + 1)
    };
    let amount: i64 = f.get("amount").and_then(|a| a.parse().ok()).unwrap_or(0);
    let metadata: serde_json::Map<String, Value> = f
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_string(), json!(v)))
        })
        .collect();
    let pi = json!({"id": id, "object": "payment_intent", "status": "requires_payment_method",
        "amount": amount, "amount_capturable": 0, "amount_received": 0, "currency": f.get("currency"),
        "capture_method": f.get("capture_method"), "client_secret": format!("{id}_secret_chaos"),
        "livemode": false, "metadata": metadata});
    l.intents.insert(id.clone(), pi.clone());
    if !check {
        l.applied.insert(
            id,
            Applied {
                amount,
                ..Applied::default()
            },
        );
    }
    (200, pi)
}

fn retrieve(l: &Ledger, id: &str) -> (u16, Value) {
    let Some(mut pi) = l.intents.get(id).cloned() else {
        return error(404, "resource_missing");
    };
    if pi["status"] == "requires_capture" {
        let lapses = chrono::Utc::now().timestamp() + 7 * 24 * 3600;
        pi["latest_charge"] = json!({"id": format!("ch_{id}"), "object": "charge",
            "payment_method_details": {"card": {"capture_before": lapses}}});
    }
    (200, pi)
}

fn settle(l: &mut Ledger, id: &str, op: &str, f: &HashMap<String, String>) -> (u16, Value) {
    let Some(pi) = l.intents.get_mut(id) else {
        return error(404, "resource_missing");
    };
    let status = pi["status"].as_str().unwrap_or_default().to_string();
    let check = id.starts_with("pi_check");
    match op {
        "capture" if status == "requires_capture" => {
            let held = pi["amount"].as_i64().unwrap_or(0);
            let amount = f
                .get("amount_to_capture")
                .and_then(|a| a.parse().ok())
                .unwrap_or(held);
            if amount > held {
                return error(400, "amount_too_large");
            }
            pi["status"] = json!("succeeded");
            pi["amount_received"] = json!(amount);
            pi["amount_capturable"] = json!(0);
            let out = pi.clone();
            l.applied
                .entry(id.into())
                .or_default()
                .captures
                .push(amount);
            (200, out)
        }
        "cancel" if status != "succeeded" && status != "canceled" => {
            pi["status"] = json!("canceled");
            pi["amount_capturable"] = json!(0);
            let out = pi.clone();
            if !check {
                l.applied.entry(id.into()).or_default().cancels += 1;
            }
            (200, out)
        }
        "capture" | "cancel" => error(400, "payment_intent_unexpected_state"),
        _ => error(404, "resource_missing"),
    }
}

fn refunds_of(l: &Ledger, pi: Option<&str>) -> Vec<Value> {
    let Some(pi) = pi else { return vec![] };
    l.applied
        .get(pi)
        .map(|a| {
            a.refunds
                .iter()
                .enumerate()
                .map(|(n, amount)| {
                    json!({"id": format!("re_{pi}_{n}"), "object": "refund",
                    "payment_intent": pi, "amount": amount, "status": "succeeded"})
                })
                .collect()
        })
        .unwrap_or_default()
}

fn refund(l: &mut Ledger, f: &HashMap<String, String>) -> (u16, Value) {
    let pi = f.get("payment_intent").cloned().unwrap_or_default();
    let Some(a) = l.applied.get_mut(&pi) else {
        return error(404, "resource_missing");
    };
    let captured: i64 = a.captures.iter().sum();
    let refunded: i64 = a.refunds.iter().sum();
    let amount = f
        .get("amount")
        .and_then(|a| a.parse().ok())
        .unwrap_or(captured - refunded);
    if amount <= 0 || refunded + amount > captured {
        return error(400, "charge_already_refunded");
    }
    a.refunds.push(amount);
    let n = a.refunds.len() - 1;
    (
        200,
        json!({"id": format!("re_{pi}_{n}"), "object": "refund", "payment_intent": pi,
            "amount": amount, "status": "succeeded", "reason": f.get("reason")}),
    )
}
