//! For aggregate specifications only: an in-memory vault, and Stripe's answers as a
//! script (what a call answers, in order; what was asked). Neither is a gateway: flows
//! are proven by the API tests against the real vault and the one fake Stripe server
//! (`roampay-testkit`).

use std::collections::HashMap;
use std::sync::Mutex;

use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::infra::stripe::{
    CallError, Capture, CreatePaymentIntent, CreateRefund, CredentialCheck, PaymentIntentStatus,
    PaymentIntentView, RefundView,
};
use crate::infra::vault::{SecretField, SecretVault, VaultError};

#[derive(Default)]
pub struct FakeVault {
    pub stored: Mutex<HashMap<(String, &'static str, u32), String>>,
}

pub fn fingerprint(secret: &str) -> String {
    hex::encode(&Sha256::digest(secret.as_bytes())[..16])
}

#[async_trait::async_trait]
impl SecretVault for FakeVault {
    async fn destroy(&self, ws: &str) -> Result<(), VaultError> {
        self.stored.lock().unwrap().retain(|k, _| k.0 != ws);
        Ok(())
    }

    async fn fingerprint(
        &self,
        _ws: &str,
        _f: SecretField,
        secret: &SecretString,
    ) -> Result<String, VaultError> {
        let key = crate::infra::vault::key_bytes(secret);
        Ok(fingerprint(std::str::from_utf8(&key).unwrap_or_default()))
    }
    async fn put(
        &self,
        ws: &str,
        f: SecretField,
        v: u32,
        _fp: &str,
        secret: &SecretString,
    ) -> Result<(), VaultError> {
        self.stored.lock().unwrap().insert(
            (ws.into(), f.as_str(), v),
            String::from_utf8_lossy(&crate::infra::vault::key_bytes(secret)).into_owned(),
        );
        Ok(())
    }
    async fn get(
        &self,
        ws: &str,
        f: SecretField,
        v: u32,
        _fp: &str,
    ) -> Result<SecretString, VaultError> {
        self.stored
            .lock()
            .unwrap()
            .get(&(ws.into(), f.as_str(), v))
            .map(|s| SecretString::from(s.clone()))
            .ok_or(VaultError::NotFound {
                field: f.as_str(),
                version: v,
            })
    }
}

/// Stripe's answers for a specification: what each call answers, and what was asked.
pub struct StripeScript {
    pub check: CredentialCheck,
    pub create: Result<PaymentIntentView, CallError>,
    pub created: Mutex<Vec<CreatePaymentIntent>>,
    /// What `retrieve` answers, when not `create`'s answer.
    pub retrieve: Mutex<Option<Result<PaymentIntentView, CallError>>>,
    /// Scripted answers to capture and cancel, first first; then success.
    pub settle: Mutex<std::collections::VecDeque<Result<PaymentIntentView, CallError>>>,
    /// (operation, amount, idempotency key) of every capture and cancel asked for.
    pub settled: Mutex<Vec<(String, i64, String)>>,
    /// Every refund asked for, and what Stripe answers (default: succeeded).
    pub refunds: Mutex<Vec<CreateRefund>>,
    pub refund_answer: Mutex<Option<Result<RefundView, CallError>>>,
}

impl StripeScript {
    pub fn new(check: CredentialCheck) -> Self {
        Self {
            check,
            create: Ok(pi("pi_fake", "requires_payment_method")),
            created: Mutex::new(vec![]),
            retrieve: Mutex::new(None),
            settle: Mutex::default(),
            settled: Mutex::new(vec![]),
            refunds: Mutex::default(),
            refund_answer: Mutex::default(),
        }
    }
}

pub fn pi(id: &str, status: &str) -> PaymentIntentView {
    PaymentIntentView {
        id: id.into(),
        status: PaymentIntentStatus::parse(status),
        amount: 5000,
        amount_capturable: if status == "requires_capture" {
            5000
        } else {
            0
        },
        amount_received: 0,
        currency: "aud".into(),
        livemode: false,
        client_secret: Some(SecretString::from(format!("{id}_secret_fake"))),
        metadata_workspace_id: Some("ws-1".into()),
        metadata_charging_intent_id: Some("ci-1".into()),
        last_payment_error: None,
        capture_before: None,
        credential_check: false,
    }
}

impl StripeScript {
    /// The credential check's verdict.
    pub fn check(&self) -> CredentialCheck {
        self.check.clone()
    }

    pub fn create(&self, req: &CreatePaymentIntent) -> Result<PaymentIntentView, CallError> {
        self.created.lock().unwrap().push(req.clone());
        self.create.clone()
    }

    pub fn retrieve(&self) -> Result<PaymentIntentView, CallError> {
        self.retrieve
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| self.create.clone())
    }

    pub fn refund(&self, req: &CreateRefund) -> Result<RefundView, CallError> {
        self.refunds.lock().unwrap().push(req.clone());
        self.refund_answer
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| {
                Ok(RefundView {
                    id: format!("re_fake{}", self.refunds.lock().unwrap().len()),
                    payment_intent_id: Some(req.payment_intent_id.clone()),
                    amount: req.amount_cents,
                    status: "succeeded".into(),
                    failure_reason: None,
                })
            })
    }

    pub fn capture(
        &self,
        id: &str,
        amount: Capture,
        idempotency_key: &str,
    ) -> Result<PaymentIntentView, CallError> {
        let amount_cents = amount.amount_cents;
        self.settled
            .lock()
            .unwrap()
            .push(("capture".into(), amount_cents, idempotency_key.into()));
        self.settle.lock().unwrap().pop_front().unwrap_or_else(|| {
            let mut p = pi(id, "succeeded");
            p.amount_received = amount_cents;
            Ok(p)
        })
    }

    pub fn cancel(&self, id: &str, idempotency_key: &str) -> Result<PaymentIntentView, CallError> {
        self.settled
            .lock()
            .unwrap()
            .push(("cancel".into(), 0, idempotency_key.into()));
        self.settle
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Ok(pi(id, "canceled")))
    }
}
