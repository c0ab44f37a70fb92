//! The one fake Stripe of the tests and benchmarks: the PaymentIntents, refunds,
//! disputes and Connect APIs on wiremock, stateful as Stripe is (idempotency keys
//! honoured: the same key, the same object and answer), with faults for the next
//! settlement calls, weather for every call (an outage, a slow Stripe), keys Stripe
//! refuses, and a ledger of what it applied per PaymentIntent.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{body_string_contains, method, path, path_regex};
use wiremock::{Match, Mock, MockServer, Request, Respond, ResponseTemplate};

/// (operation, PaymentIntent id, idempotency key, form).
pub type SettleRequest = (String, String, Option<String>, HashMap<String, String>);

#[derive(Default)]
pub struct State {
    /// PaymentIntents by id.
    pub intents: HashMap<String, Value>,
    /// Idempotency key → PaymentIntent id.
    pub keys: HashMap<String, String>,
    /// Every create request: (idempotency key, authorization header, form).
    pub creates: Vec<(Option<String>, String, HashMap<String, String>)>,
    /// Every retrieve: (id, authorization header).
    pub retrieves: Vec<(String, String)>,
    /// Every capture or cancel request: (operation, id, idempotency key, form).
    pub settle_requests: Vec<SettleRequest>,
    /// Captures and cancels Stripe actually applied: (operation, id, amount).
    pub applied: Vec<(String, String, i64)>,
    /// Answers already given per idempotency key of a capture or cancel (replayed).
    pub settle_keys: HashMap<String, (u16, Value)>,
    /// Faults for the next capture/cancel requests, first first.
    pub faults: std::collections::VecDeque<Fault>,
    /// Refunds Stripe made, by id (as Stripe returns them).
    pub refunds: Vec<Value>,
    /// Every refund request: (idempotency key, form).
    pub refund_requests: Vec<(Option<String>, HashMap<String, String>)>,
    /// The status new refunds get (`succeeded` unless a test says otherwise).
    pub refund_status: Option<String>,
    /// Disputes opened by drivers' banks.
    pub disputes: Vec<Value>,
    /// Credential checks' PaymentIntents, apart from the payments.
    pub check_intents: HashMap<String, Value>,
    /// Every credential check's create: (authorization header, form).
    pub checks: Vec<(String, HashMap<String, String>)>,
    /// The Stripe account of a key (publishable or secret); `acct_test_1` otherwise.
    pub accounts: HashMap<String, String>,
    /// The account each PaymentIntent was made in.
    pub pi_accounts: HashMap<String, String>,
    /// Keys Stripe answers 401 (rolled or deleted in the Dashboard).
    pub revoked: std::collections::HashSet<String>,
    /// Restricted keys with PaymentIntents "Read" only: 403 on writes.
    pub read_only: std::collections::HashSet<String>,
    /// Connected accounts the platform created, by id.
    pub connected: HashMap<String, Value>,
    /// Idempotency key → connected account id (as Stripe: same key, same account).
    pub account_keys: HashMap<String, String>,
    /// Every `POST /v1/accounts`: (idempotency key, form).
    pub account_creates: Vec<(Option<String>, HashMap<String, String>)>,
    /// Every `POST /v1/account_links` form.
    pub account_links: Vec<HashMap<String, String>>,
    /// Connected accounts the platform lost access to (403 `account_invalid`).
    pub lost: std::collections::HashSet<String>,
    /// PaymentIntents a driver's card authorized ([`FakeStripe::authorize`]).
    pub authorized: HashSet<String>,
    /// A held PaymentIntent is read with its charge's `capture_before` this far ahead.
    pub capture_before: Option<chrono::Duration>,
    /// Requests no mock of this fake knows.
    pub unexpected: Vec<String>,
}

impl State {
    fn account_of(&self, key: &str) -> String {
        self.accounts
            .get(key)
            .cloned()
            .unwrap_or_else(|| "acct_test_1".into())
    }

    /// The account a request acts on: the connected account its `Stripe-Account`
    /// header names, else the key's own.
    fn account_of_request(&self, req: &Request) -> String {
        header(req, "stripe-account").unwrap_or_else(|| self.account_of(&bearer(req)))
    }

    /// Stripe's refusal of the request's key, if it refuses it.
    fn refusal(&self, req: &Request, write: bool) -> Option<ResponseTemplate> {
        if header(req, "stripe-account").is_some_and(|a| self.lost.contains(&a)) {
            return Some(ResponseTemplate::new(403).set_body_json(json!({"error": {
                "type": "invalid_request_error", "code": "account_invalid",
                "message": "The provided key does not have access to account 'acct_…'."}})));
        }
        let key = bearer(req);
        if self.revoked.contains(&key) {
            return Some(ResponseTemplate::new(401).set_body_json(json!({"error": {
                "type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****"}})));
        }
        (write && self.read_only.contains(&key)).then(|| {
            ResponseTemplate::new(403).set_body_json(json!({"error": {
                "type": "invalid_request_error",
                "message": "The provided key does not have the required permissions for this endpoint."}}))
        })
    }
}

/// The key of the request's `Authorization: Bearer …`.
pub fn bearer(req: &Request) -> String {
    header(req, "authorization")
        .and_then(|a| a.strip_prefix("Bearer ").map(str::to_string))
        .unwrap_or_default()
}

/// What the next capture or cancel request meets.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Applied, but the answer comes too late for the client (a timeout).
    ApplyThenTimeout,
    /// Applied, and the answer takes a minute (time to kill the client meanwhile).
    ApplyThenHang,
    /// A 500 before anything was applied.
    ServerError,
    /// Refused for good with this error code (HTTP 400), nothing applied.
    Refuse(&'static str),
}

/// How Stripe answers every call right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weather {
    Fine = 0,
    /// Every call is answered 500 before anything is applied.
    Failing = 1,
    /// Every call is applied, and answered after [`SLOW`] (past roampay's timeout).
    Slow = 2,
}

/// How long a slow Stripe takes to answer (roampay is told to wait less).
pub const SLOW: Duration = Duration::from_secs(4);

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

#[derive(Clone, Default)]
pub struct FakeStripe {
    pub state: Arc<Mutex<State>>,
    weather: Arc<AtomicU8>,
}

impl FakeStripe {
    /// An answer as the weather makes it: late when Stripe is slow.
    fn weathered(&self, reply: ResponseTemplate) -> ResponseTemplate {
        if self.weather.load(Ordering::SeqCst) == Weather::Slow as u8 {
            reply.set_delay(SLOW)
        } else {
            reply
        }
    }
}

/// Matches every request while Stripe is down.
struct Down(FakeStripe);

impl Match for Down {
    fn matches(&self, _: &Request) -> bool {
        self.0.weather.load(Ordering::SeqCst) == Weather::Failing as u8
    }
}

/// Records a request no mock knows.
struct Unexpected(FakeStripe);

impl Respond for Unexpected {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.0.state.lock().unwrap();
        st.unexpected
            .push(format!("{} {}", req.method, req.url.path()));
        ResponseTemplate::new(404) // as wiremock answers what nobody mocked
    }
}

fn form(req: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect()
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

struct Create(FakeStripe);

impl Respond for Create {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.0.state.lock().unwrap();
        let f = form(req);
        let refused = st.refusal(req, true);
        if f.get("metadata[roampay_purpose]").map(String::as_str) == Some("credential_check") {
            return refused.unwrap_or_else(|| check_create(&mut st, req, f));
        }
        let key = header(req, "idempotency-key");
        st.creates.push((
            key.clone(),
            header(req, "authorization").unwrap_or_default(),
            f.clone(),
        ));
        if let Some(refused) = refused {
            return refused;
        }
        if let Some(id) = key.as_ref().and_then(|k| st.keys.get(k)).cloned() {
            return ResponseTemplate::new(200).set_body_json(st.intents[&id].clone());
        }
        let n = st.intents.len() + 1;
        let id = format!("pi_fake{n:04}");
        let metadata: serde_json::Map<String, Value> = f
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("metadata[")
                    .and_then(|k| k.strip_suffix(']'))
                    .map(|k| (k.to_string(), json!(v)))
            })
            .collect();
        let auth = header(req, "authorization").unwrap_or_default();
        let pi = json!({
            "id": id, "object": "payment_intent", "status": "requires_payment_method",
            "amount": f.get("amount").and_then(|a| a.parse::<i64>().ok()).unwrap_or(0),
            "amount_capturable": 0, "currency": f.get("currency"), "capture_method": f.get("capture_method"),
            "client_secret": format!("{id}_secret_fake"), "livemode": auth.contains("_live_"),
            "metadata": metadata,
        });
        st.intents.insert(id.clone(), pi.clone());
        let account = st.account_of_request(req);
        st.pi_accounts.insert(id.clone(), account);
        if let Some(k) = key {
            st.keys.insert(k, id);
        }
        self.0
            .weathered(ResponseTemplate::new(200).set_body_json(pi))
    }
}

/// A credential check's PaymentIntent: kept apart, so tests of payments see only theirs.
fn check_create(st: &mut State, req: &Request, f: HashMap<String, String>) -> ResponseTemplate {
    let auth = header(req, "authorization").unwrap_or_default();
    st.checks.push((auth.clone(), f.clone()));
    let id = format!("pi_check{:04}", st.checks.len());
    let pi = json!({
        "id": id, "object": "payment_intent", "status": "requires_payment_method",
        "amount": f.get("amount").and_then(|a| a.parse::<i64>().ok()).unwrap_or(0),
        "currency": f.get("currency"), "capture_method": f.get("capture_method"),
        "client_secret": format!("{id}_secret_check"), "livemode": auth.contains("_live_"),
        "metadata": {"roampay_purpose": "credential_check", "workspace_id": f.get("metadata[workspace_id]")},
    });
    let account = st.account_of(&bearer(req));
    st.pi_accounts.insert(id.clone(), account);
    st.check_intents.insert(id, pi.clone());
    ResponseTemplate::new(200).set_body_json(pi)
}

struct Retrieve(FakeStripe);

impl Respond for Retrieve {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.0.state.lock().unwrap();
        let id = req
            .url
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        if let Some(refused) = st.refusal(req, false) {
            return refused;
        }
        let missing = ResponseTemplate::new(404).set_body_json(
            json!({"error": {"type": "invalid_request_error", "code": "resource_missing"}}),
        );
        let key = bearer(req);
        let pi = st.intents.get(&id).or(st.check_intents.get(&id)).cloned();
        let Some(pi) = pi else { return missing };
        // Another account sees nothing of this one's objects; a publishable key reads
        // only with the PaymentIntent's client secret (as Stripe.js does).
        if st.pi_accounts.get(&id) != Some(&st.account_of_request(req)) {
            return missing;
        }
        if key.starts_with("pk_") {
            let q: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
            if q.get("client_secret").map(String::as_str) != pi["client_secret"].as_str() {
                return missing;
            }
        } else {
            st.retrieves
                .push((id.clone(), header(req, "authorization").unwrap_or_default()));
        }
        let mut pi = pi;
        if let (Some(ahead), "requires_capture") =
            (st.capture_before, pi["status"].as_str().unwrap_or_default())
        {
            let lapses = (chrono::Utc::now() + ahead).timestamp();
            pi["latest_charge"] = json!({"id": format!("ch_{id}"), "object": "charge",
                "payment_method_details": {"card": {"capture_before": lapses}}});
        }
        self.0
            .weathered(ResponseTemplate::new(200).set_body_json(pi))
    }
}

struct Settle(FakeStripe, &'static str);

impl Respond for Settle {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.0.state.lock().unwrap();
        let op = self.1;
        let id = req
            .url
            .path()
            .split('/')
            .nth(3)
            .unwrap_or_default()
            .to_string();
        if let Some(refused) = st.refusal(req, true) {
            return refused;
        }
        if let Some(pi) = st.check_intents.get_mut(&id) {
            pi["status"] = json!(if op == "cancel" {
                "canceled"
            } else {
                "succeeded"
            });
            return ResponseTemplate::new(200).set_body_json(pi.clone());
        }
        let key = header(req, "idempotency-key");
        let f = form(req);
        st.settle_requests
            .push((op.into(), id.clone(), key.clone(), f.clone()));
        if st.intents.contains_key(&id)
            && st.pi_accounts.get(&id) != Some(&st.account_of_request(req))
        {
            return ResponseTemplate::new(404).set_body_json(
                json!({"error": {"type": "invalid_request_error", "code": "resource_missing"}}),
            );
        }
        if let Some((status, body)) = key.as_ref().and_then(|k| st.settle_keys.get(k)).cloned() {
            return ResponseTemplate::new(status).set_body_json(body); // Stripe replays
        }
        let fault = st.faults.pop_front();
        match fault {
            Some(Fault::ServerError) => {
                return ResponseTemplate::new(500)
                    .set_body_json(json!({"error": {"type": "api_error"}}))
            }
            Some(Fault::Refuse(code)) => {
                return ResponseTemplate::new(400).set_body_json(
                    json!({"error": {"type": "invalid_request_error", "code": code}}),
                )
            }
            _ => {}
        }
        let Some(pi) = st.intents.get_mut(&id) else {
            return ResponseTemplate::new(404).set_body_json(
                json!({"error": {"type": "invalid_request_error", "code": "resource_missing"}}),
            );
        };
        let status = pi["status"].as_str().unwrap_or_default().to_string();
        let held = pi["amount"].as_i64().unwrap_or(0);
        let asked = f
            .get("amount_to_capture")
            .and_then(|a| a.parse::<i64>().ok())
            .unwrap_or(held);
        let (code, body) = match op {
            "capture" if status == "requires_capture" && asked > held => (
                400,
                json!({"error": {"type": "invalid_request_error", "code": "amount_too_large"}}),
            ),
            "capture" if status == "requires_capture" => {
                let amount = asked;
                pi["status"] = json!("succeeded");
                pi["amount_received"] = json!(amount);
                pi["amount_capturable"] = json!(0);
                let out = pi.clone();
                st.applied.push((op.into(), id.clone(), amount));
                (200, out)
            }
            "cancel" if status != "succeeded" && status != "canceled" => {
                pi["status"] = json!("canceled");
                pi["amount_capturable"] = json!(0);
                let out = pi.clone();
                st.applied.push((op.into(), id.clone(), 0));
                (200, out)
            }
            _ => (
                400,
                json!({"error": {"type": "invalid_request_error", "code": "payment_intent_unexpected_state"}}),
            ),
        };
        if let Some(k) = key {
            st.settle_keys.insert(k, (code, body.clone()));
        }
        let reply = self
            .0
            .weathered(ResponseTemplate::new(code).set_body_json(body));
        match fault {
            Some(Fault::ApplyThenTimeout) => reply.set_delay(std::time::Duration::from_secs(5)),
            Some(Fault::ApplyThenHang) => reply.set_delay(std::time::Duration::from_secs(60)),
            _ => reply,
        }
    }
}

/// `POST /v1/refunds`: like Stripe, at most what was captured and not yet refunded, and
/// the same idempotency key answers the same refund.
struct CreateRefundResponder(FakeStripe);

impl Respond for CreateRefundResponder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.0.state.lock().unwrap();
        let f = form(req);
        let key = header(req, "idempotency-key");
        st.refund_requests.push((key.clone(), f.clone()));
        if let Some(done) = key.as_ref().and_then(|k| {
            st.refunds
                .iter()
                .find(|r| r["metadata"]["idempotency_key"] == k.as_str())
        }) {
            return ResponseTemplate::new(200).set_body_json(done.clone());
        }
        let pi = f.get("payment_intent").cloned().unwrap_or_default();
        if st.pi_accounts.get(&pi) != Some(&st.account_of_request(req)) {
            return stripe_error(404, "resource_missing", "no such payment_intent");
        }
        let amount: i64 = f.get("amount").and_then(|a| a.parse().ok()).unwrap_or(0);
        let captured = st
            .intents
            .get(&pi)
            .and_then(|p| p["amount_received"].as_i64())
            .unwrap_or(0);
        let refunded: i64 = st
            .refunds
            .iter()
            .filter(|r| r["payment_intent"] == pi.as_str() && r["status"] != "failed")
            .map(|r| r["amount"].as_i64().unwrap_or(0))
            .sum();
        if amount + refunded > captured {
            return stripe_error(400, "charge_already_refunded", "exceeds");
        }
        let refund = json!({
            "id": format!("re_fake{:04}", st.refunds.len() + 1), "object": "refund",
            "payment_intent": pi, "amount": amount,
            "status": st.refund_status.clone().unwrap_or_else(|| "succeeded".into()),
            "reason": f.get("reason"), "metadata": {"idempotency_key": key},
        });
        st.refunds.push(refund.clone());
        self.0
            .weathered(ResponseTemplate::new(200).set_body_json(refund))
    }
}

/// `GET /v1/refunds?payment_intent=…` (and with `true`, `GET /v1/disputes?…`).
struct ListRefunds(FakeStripe, bool);

impl Respond for ListRefunds {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let st = self.0.state.lock().unwrap();
        let q: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        let pi = q.get("payment_intent").cloned().unwrap_or_default();
        let all = if self.1 { &st.disputes } else { &st.refunds };
        let data: Vec<&Value> = all
            .iter()
            .filter(|r| r["payment_intent"] == pi.as_str())
            .collect();
        ResponseTemplate::new(200)
            .set_body_json(json!({"object": "list", "data": data, "has_more": false}))
    }
}

/// `POST /v1/accounts`, `GET /v1/accounts/{id}`, `POST /v1/account_links`.
struct Accounts(FakeStripe);

impl Respond for Accounts {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.0.state.lock().unwrap();
        let p = req.url.path().to_string();
        let f = form(req);
        if p == "/v1/account_links" {
            st.account_links.push(f.clone());
            let n = st.account_links.len();
            return ResponseTemplate::new(200).set_body_json(json!({
                "object": "account_link", "created": 1, "expires_at": 4102444800i64,
                "url": format!("https://connect.stripe.com/setup/s/fake{n}")}));
        }
        if req.method.as_str() == "GET" {
            let id = p.rsplit('/').next().unwrap_or_default();
            return match st.connected.get(id) {
                Some(a) => ResponseTemplate::new(200).set_body_json(a.clone()),
                None => stripe_error(404, "resource_missing", "no such account"),
            };
        }
        let key = header(req, "idempotency-key");
        st.account_creates.push((key.clone(), f.clone()));
        if let Some(id) = key.as_ref().and_then(|k| st.account_keys.get(k)).cloned() {
            return ResponseTemplate::new(200).set_body_json(st.connected[&id].clone());
        }
        let id = format!("acct_fake{:04}", st.connected.len() + 1);
        let account = json!({
            "id": id, "object": "account", "type": f.get("type"),
            "charges_enabled": false, "payouts_enabled": false, "details_submitted": false,
            "requirements": {"currently_due": ["external_account", "tos_acceptance.date"]},
            "metadata": {"workspace_id": f.get("metadata[workspace_id]")},
        });
        st.connected.insert(id.clone(), account.clone());
        if let Some(k) = key {
            st.account_keys.insert(k, id);
        }
        ResponseTemplate::new(200).set_body_json(account)
    }
}

impl FakeStripe {
    /// The connected account after onboarding finished (or with charges disabled again),
    /// as `account.updated` carries it.
    pub fn set_charges(&self, account: &str, enabled: bool) -> Value {
        let mut st = self.state.lock().unwrap();
        let a = st.connected.get_mut(account).expect("known account");
        a["charges_enabled"] = json!(enabled);
        a["payouts_enabled"] = json!(enabled);
        a["details_submitted"] = json!(true);
        a["requirements"]["currently_due"] = if enabled {
            json!([])
        } else {
            json!(["individual.verification.document"])
        };
        a.clone()
    }

    /// The platform loses access to the account (Stripe answers 403 `account_invalid`).
    pub fn lose_access(&self, account: &str) {
        self.state.lock().unwrap().lost.insert(account.into());
    }

    /// A refund made in the Stripe Dashboard (no request of roampay's).
    pub fn dashboard_refund(&self, pi: &str, amount: i64) -> Value {
        let mut st = self.state.lock().unwrap();
        let refund = json!({
            "id": format!("re_dash{:04}", st.refunds.len() + 1), "object": "refund",
            "payment_intent": pi, "amount": amount, "status": "succeeded", "metadata": {},
        });
        st.refunds.push(refund.clone());
        refund
    }

    /// A dispute opened by the driver's bank.
    pub fn dispute(&self, pi: &str, amount: i64, status: &str) {
        self.state.lock().unwrap().disputes.push(json!({
            "id": "dp_fake1", "object": "dispute", "payment_intent": pi, "amount": amount,
            "reason": "fraudulent", "status": status,
        }));
    }

    /// Total refunded in Stripe for a PaymentIntent.
    pub fn refunded(&self, pi: &str) -> i64 {
        let st = self.state.lock().unwrap();
        st.refunds
            .iter()
            .filter(|r| r["payment_intent"] == pi && r["status"] == "succeeded")
            .map(|r| r["amount"].as_i64().unwrap_or(0))
            .sum()
    }
}

impl FakeStripe {
    /// Mounts the credential check, PaymentIntent create and retrieve.
    pub async fn mount(&self, server: &MockServer) {
        mount_ok(server).await;
        Mock::given(Down(self.clone()))
            .respond_with(
                ResponseTemplate::new(500)
                    .set_body_json(json!({"error": {"type": "api_error", "message": "outage"}})),
            )
            .with_priority(1)
            .mount(server)
            .await;
        Mock::given(wiremock::matchers::any())
            .respond_with(Unexpected(self.clone()))
            .with_priority(u8::MAX)
            .mount(server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/payment_intents"))
            .respond_with(Create(self.clone()))
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/v1/payment_intents/pi_[A-Za-z0-9_]+$"))
            .respond_with(Retrieve(self.clone()))
            .mount(server)
            .await;
        Mock::given(method("POST"))
            .and(path_regex(
                r"^/v1/payment_intents/pi_[A-Za-z0-9_]+/capture$",
            ))
            .respond_with(Settle(self.clone(), "capture"))
            .mount(server)
            .await;
        Mock::given(method("POST"))
            .and(path_regex(r"^/v1/payment_intents/pi_[A-Za-z0-9_]+/cancel$"))
            .respond_with(Settle(self.clone(), "cancel"))
            .mount(server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/refunds"))
            .respond_with(CreateRefundResponder(self.clone()))
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/refunds"))
            .respond_with(ListRefunds(self.clone(), false))
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/disputes"))
            .respond_with(ListRefunds(self.clone(), true))
            .mount(server)
            .await;
        Mock::given(path_regex(
            r"^/v1/(accounts(/acct_[A-Za-z0-9]+)?|account_links)$",
        ))
        .respond_with(Accounts(self.clone()))
        .mount(server)
        .await;
    }

    pub fn fault(&self, f: Fault) {
        self.state.lock().unwrap().faults.push_back(f);
    }

    /// Captures and cancels Stripe applied.
    pub fn applied(&self) -> Vec<(String, String, i64)> {
        self.state.lock().unwrap().applied.clone()
    }

    /// How Stripe answers from now on.
    pub fn set_weather(&self, w: Weather) {
        self.weather.store(w as u8, Ordering::SeqCst);
    }

    /// A held PaymentIntent reads with `capture_before` this far ahead (as a card's
    /// charge says when the hold lapses).
    pub fn set_capture_before(&self, ahead: chrono::Duration) {
        self.state.lock().unwrap().capture_before = Some(ahead);
    }

    /// The driver's card is accepted in Stripe.js: the hold is placed. Returns the
    /// PaymentIntent, or `None` if it is not waiting for a card.
    pub fn authorize(&self, pi: &str) -> Option<Value> {
        let mut st = self.state.lock().unwrap();
        let p = st.intents.get_mut(pi)?;
        if p["status"] != "requires_payment_method" {
            return None;
        }
        p["status"] = json!("requires_capture");
        p["amount_capturable"] = p["amount"].clone();
        let out = p.clone();
        st.authorized.insert(pi.to_string());
        Some(out)
    }

    /// The PaymentIntent as Stripe holds it now.
    pub fn intent(&self, pi: &str) -> Option<Value> {
        self.state.lock().unwrap().intents.get(pi).cloned()
    }

    /// What Stripe applied, per PaymentIntent (credential checks apart).
    pub fn ledger(&self) -> HashMap<String, Applied> {
        let st = self.state.lock().unwrap();
        let mut ledger: HashMap<String, Applied> = st
            .intents
            .iter()
            .map(|(id, pi)| {
                let a = Applied {
                    amount: pi["amount"].as_i64().unwrap_or(0),
                    authorized: st.authorized.contains(id),
                    ..Applied::default()
                };
                (id.clone(), a)
            })
            .collect();
        for (op, id, amount) in &st.applied {
            let a = ledger.entry(id.clone()).or_default();
            match op.as_str() {
                "capture" => a.captures.push(*amount),
                _ => a.cancels += 1,
            }
        }
        for r in st.refunds.iter().filter(|r| r["status"] == "succeeded") {
            let pi = r["payment_intent"].as_str().unwrap_or_default().to_string();
            let amount = r["amount"].as_i64().unwrap_or(0);
            ledger.entry(pi).or_default().refunds.push(amount);
        }
        ledger
    }

    /// Requests no mock of this fake knows.
    pub fn unexpected(&self) -> Vec<String> {
        self.state.lock().unwrap().unexpected.clone()
    }

    pub async fn start() -> (MockServer, FakeStripe) {
        let server = MockServer::start().await;
        let fake = FakeStripe::default();
        fake.mount(&server).await;
        (server, fake)
    }

    /// Moves a PaymentIntent to `status` (as a driver confirming a card would) and
    /// returns it.
    pub fn set_status(&self, id: &str, status: &str) -> Value {
        let mut st = self.state.lock().unwrap();
        let pi = st.intents.get_mut(id).expect("known PaymentIntent");
        pi["status"] = json!(status);
        if status == "requires_capture" {
            pi["amount_capturable"] = pi["amount"].clone();
        }
        pi.clone()
    }

    pub fn distinct_intents(&self) -> usize {
        self.state.lock().unwrap().intents.len()
    }

    /// Credential checks' PaymentIntents not cancelled.
    pub fn open_checks(&self) -> Vec<String> {
        let st = self.state.lock().unwrap();
        st.check_intents
            .values()
            .filter(|pi| pi["status"] != "canceled")
            .map(|pi| pi["id"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Puts a key in another Stripe account.
    pub fn in_account(&self, key: &str, account: &str) {
        let mut st = self.state.lock().unwrap();
        st.accounts.insert(key.into(), account.into());
    }

    /// The key is rolled or deleted in the Dashboard: Stripe answers 401.
    pub fn revoke(&self, key: &str) {
        self.state.lock().unwrap().revoked.insert(key.into());
    }

    /// A restricted key with PaymentIntents "Read" only.
    pub fn read_only(&self, key: &str) {
        self.state.lock().unwrap().read_only.insert(key.into());
    }

    /// The key of each request to create a payment PaymentIntent, in order.
    pub fn creating_keys(&self) -> Vec<String> {
        let st = self.state.lock().unwrap();
        st.creates
            .iter()
            .map(|(_, auth, _)| auth.trim_start_matches("Bearer ").to_string())
            .collect()
    }
}

/// `GET /v1/payment_intents`: every PaymentIntent, newest id first, in pages of `limit`.
struct List(FakeStripe);

impl Respond for List {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let st = self.0.state.lock().unwrap();
        let q: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(10);
        // Real Stripe lists the credential checks' PaymentIntents too.
        let mut all: Vec<&Value> = st
            .intents
            .values()
            .chain(st.check_intents.values())
            .collect();
        all.sort_by(|a, b| b["id"].as_str().cmp(&a["id"].as_str()));
        let start = q
            .get("starting_after")
            .and_then(|after| all.iter().position(|p| p["id"] == after.as_str()))
            .map_or(0, |i| i + 1);
        let page: Vec<Value> = all
            .iter()
            .skip(start)
            .take(limit)
            .map(|v| (*v).clone())
            .collect();
        let has_more = start + page.len() < all.len();
        ResponseTemplate::new(200)
            .set_body_json(json!({"object": "list", "data": page, "has_more": has_more}))
    }
}

impl FakeStripe {
    /// Serves the PaymentIntent list from the fake's state (ahead of `mount_ok`'s
    /// fixed answer to the credential check).
    pub async fn mount_list(&self, server: &MockServer) {
        Mock::given(method("GET"))
            .and(path("/v1/payment_intents"))
            .respond_with(List(self.clone()))
            .with_priority(1)
            .mount(server)
            .await;
    }

    /// A PaymentIntent made in the account without roampay (the test says how).
    pub fn insert(&self, pi: Value) {
        let mut st = self.state.lock().unwrap();
        st.intents
            .insert(pi["id"].as_str().unwrap().to_string(), pi);
    }

    /// Changes fields of a PaymentIntent as Stripe would after an action elsewhere.
    pub fn update(&self, id: &str, fields: Value) {
        let mut st = self.state.lock().unwrap();
        let pi = st.intents.get_mut(id).expect("known PaymentIntent");
        for (k, v) in fields.as_object().unwrap() {
            pi[k] = v.clone();
        }
    }
}

/// A Stripe that accepts any key: the credential check (a PaymentIntent created,
/// read back with the publishable key, cancelled), an empty PaymentIntent list, and
/// account `acct_test_1`. Stateless and of low priority: a test's own mocks and the
/// stateful [`FakeStripe`] answer first.
pub async fn mount_ok(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .and(body_string_contains("credential_check"))
        .respond_with(move |req: &wiremock::Request| {
            let live = req
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("_live_"));
            ResponseTemplate::new(200).set_body_json(check_intent("requires_payment_method", live))
        })
        .with_priority(10)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents/pi_check_1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(check_intent("requires_payment_method", false)),
        )
        .with_priority(10)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents/pi_check_1/cancel"))
        .respond_with(ResponseTemplate::new(200).set_body_json(check_intent("canceled", false)))
        .with_priority(10)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"object": "list", "data": [], "has_more": false, "url": "/v1/payment_intents"}),
        ))
        .with_priority(10)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "acct_test_1", "object": "account"})),
        )
        .with_priority(10)
        .mount(server)
        .await;
}

pub fn check_intent(status: &str, livemode: bool) -> Value {
    json!({
        "id": "pi_check_1", "object": "payment_intent", "status": status, "amount": 50,
        "currency": "aud", "capture_method": "manual", "livemode": livemode,
        "client_secret": "pi_check_1_secret_x",
        "metadata": {"roampay_purpose": "credential_check"}
    })
}

pub fn stripe_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": {"type": "invalid_request_error", "code": code, "message": message}
    }))
}
