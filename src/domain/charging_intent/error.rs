#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChargingIntentError {
    #[error("the idempotency key was used with a different request")]
    IdempotencyKeyReused,
    #[error("no such charging intent")]
    NotFound,
    /// The PaymentIntent, its metadata and the recorded intent do not all agree.
    #[error("the PaymentIntent does not belong to this workspace's charging intent")]
    OwnershipMismatch,
    #[error("the PaymentIntent's livemode differs from the workspace's mode")]
    LivemodeMismatch,
    #[error("this Stripe event was already applied")]
    DuplicateStripeEvent,
    /// Nothing to apply: the status Stripe reports is not ahead of ours.
    #[error("no change")]
    NoChange,
    #[error("this intent needs no payment")]
    NoPayment,
    /// Stripe gave no definite answer; nothing was recorded (try again).
    #[error("Stripe did not answer definitely")]
    StripeUnavailable,
    /// The step does not apply in the intent's current status.
    #[error("not possible while the intent is {0}")]
    InvalidTransition(&'static str),
    /// The refunds would add up to more than was captured.
    #[error("only {refundable} of the capture is left to refund")]
    RefundExceedsCaptured { refundable: i64 },
}
