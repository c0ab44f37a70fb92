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
    #[error("this workspace has no connected account to onboard")]
    ConnectAccountUnknown,
    /// The connection to switch to cannot take payments (its health).
    #[error("the connection to switch to is {0}, not valid")]
    ConnectionNotReady(&'static str),
    /// The secrets were stored under another version than the profile hands out now
    /// (a concurrent save took it): plan and store again.
    #[error("another save took credential version {stored_as}")]
    StaleSave { stored_as: u32 },
}
