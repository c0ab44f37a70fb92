//! In-memory fakes of the vault and Stripe, for aggregate specifications only. Flows
//! are proven by the API tests against the real vault and a fake Stripe server.

use std::collections::HashMap;
use std::sync::Mutex;

use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::stripe::{
    CallError, Capture, CreatePaymentIntent, CreateRefund, CredentialCheck, CredentialProbe,
    PaymentIntentPage, PaymentIntentStatus, PaymentIntentView, RefundView, StripeAccount,
    StripeGateway,
};
use crate::vault::{SecretField, SecretVault, VaultError};

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
        let key = crate::vault::key_bytes(secret);
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
            String::from_utf8_lossy(&crate::vault::key_bytes(secret)).into_owned(),
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

/// Answers with what it was given; records the PaymentIntents it was asked to create.
pub struct FakeStripe {
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

impl FakeStripe {
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

#[async_trait::async_trait]
impl StripeGateway for FakeStripe {
    async fn check_credentials(&self, _probe: &CredentialProbe<'_>) -> CredentialCheck {
        self.check.clone()
    }
    async fn create_payment_intent(
        &self,
        _on: &StripeAccount,
        req: &CreatePaymentIntent,
    ) -> Result<PaymentIntentView, CallError> {
        self.created.lock().unwrap().push(req.clone());
        self.create.clone()
    }
    async fn retrieve_payment_intent(
        &self,
        _on: &StripeAccount,
        _id: &str,
    ) -> Result<PaymentIntentView, CallError> {
        self.retrieve
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| self.create.clone())
    }
    async fn create_refund(
        &self,
        _on: &StripeAccount,
        req: &CreateRefund,
    ) -> Result<RefundView, CallError> {
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
    async fn list_refunds(
        &self,
        _on: &StripeAccount,
        _payment_intent_id: &str,
    ) -> Result<Vec<RefundView>, CallError> {
        Ok(vec![])
    }
    async fn list_disputes(
        &self,
        _on: &StripeAccount,
        _payment_intent_id: &str,
    ) -> Result<Vec<crate::stripe::DisputeView>, CallError> {
        Ok(vec![])
    }
    async fn list_payment_intents(
        &self,
        _on: &StripeAccount,
        _created_gte: Option<i64>,
        _starting_after: Option<&str>,
    ) -> Result<PaymentIntentPage, CallError> {
        Ok(PaymentIntentPage {
            data: vec![],
            has_more: false,
        })
    }
    async fn capture_payment_intent(
        &self,
        _on: &StripeAccount,
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
    async fn cancel_payment_intent(
        &self,
        _on: &StripeAccount,
        id: &str,
        idempotency_key: &str,
    ) -> Result<PaymentIntentView, CallError> {
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
