#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkspaceStripeProfileError {
    /// The first save (or the first after a removal) must carry all three values.
    #[error("a new credential set needs the publishable key, the secret key and the webhook signing secret")]
    IncompleteCredentials,
    #[error("the publishable key is a {publishable} key but the secret key is a {secret} key")]
    CredentialModeMismatch {
        publishable: &'static str,
        secret: &'static str,
    },
    #[error("this workspace has no Stripe credentials")]
    CredentialsNotConfigured,
    #[error("the secret vault failed: {0}")]
    Vault(String),
}
