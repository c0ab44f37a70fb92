//! Settings: every one a flag and an environment variable.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::builder::BoolishValueParser;
use clap::Args;
use secrecy::SecretString;

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// `postgres://…` or `sqlite:…`; default: SQLite file `roampay.db` in the data directory.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where the default SQLite file and generated keys live.
    #[arg(long, env = "ROAMPAY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// How long a request waits for a database connection before answering 503
    /// `store_unavailable`.
    #[arg(long, env = "ROAMPAY_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 5_000)]
    pub db_acquire_timeout_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Base64 of 32 bytes. On SQLite generated under the data directory when unset; on
    /// PostgreSQL required (every instance shares one).
    #[arg(long, env = "ROAMPAY_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<SecretString>,
    /// The master key before a rotation (`roampay keys rotate-master`), comma-separated
    /// base64 when several: still able to unwrap data keys until it is removed.
    #[arg(long, env = "ROAMPAY_MASTER_KEY_PREVIOUS", hide_env_values = true)]
    pub master_key_previous: Option<SecretString>,
    /// The name v1/v2 gave `ROAMPAY_MASTER_KEY_PREVIOUS` (still read).
    #[arg(
        long,
        env = "ROAMPAY_PREVIOUS_MASTER_KEYS",
        hide = true,
        hide_env_values = true
    )]
    pub previous_master_keys: Option<SecretString>,
    #[command(flatten)]
    pub jwt: JwtArgs,
}

/// Bearer tokens: the HS256 secret and the claims required of them.
#[derive(Debug, Clone, Args)]
pub struct JwtArgs {
    /// HS256 secret for bearer tokens (at least 32 bytes); generated under the data
    /// directory when unset.
    #[arg(long, env = "ROAMPAY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,
    /// Required `iss` claim, when set.
    #[arg(long, env = "ROAMPAY_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim, when set.
    #[arg(long, env = "ROAMPAY_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Seconds a token is still accepted after its `exp` (and before its `nbf`): the
    /// clock skew allowed between the issuer and roampay.
    #[arg(long, env = "ROAMPAY_JWT_LEEWAY_SECS", default_value_t = 5)]
    pub jwt_leeway_secs: u64,
}

/// How roampay reaches Stripe.
#[derive(Debug, Clone, Args)]
pub struct StripeArgs {
    /// Stripe's API, or a Stripe-compatible peer (e.g. localstripe) for tests.
    #[arg(
        long,
        env = "STRIPE_API_BASE",
        default_value = "https://api.stripe.com"
    )]
    pub stripe_api_base: String,
    /// Per-attempt timeout of a Stripe call.
    #[arg(long, env = "ROAMPAY_STRIPE_TIMEOUT_MS", default_value_t = 10_000)]
    pub stripe_timeout_ms: u64,
    /// Attempts per Stripe call (the first included); retries reuse the idempotency key.
    #[arg(long, env = "ROAMPAY_STRIPE_MAX_ATTEMPTS", default_value_t = 3)]
    pub stripe_max_attempts: u32,
}

/// The platform's own Stripe account: it bills workspaces (with plans) and acts on
/// their connected accounts (Stripe Connect). Both are off without its secret key.
#[derive(Debug, Clone, Args)]
pub struct PlatformArgs {
    /// The platform's Stripe secret key (not a workspace's).
    #[arg(
        long,
        env = "ROAMPAY_PLATFORM_STRIPE_SECRET_KEY",
        hide_env_values = true
    )]
    pub platform_stripe_secret_key: Option<SecretString>,
    /// The platform's publishable key: Stripe.js starts with it (and
    /// `{stripeAccount}`) for connect-mode workspaces. Connect is off without it.
    #[arg(long, env = "ROAMPAY_PLATFORM_PUBLISHABLE_KEY")]
    pub platform_publishable_key: Option<String>,
    /// The signing secret of the platform's Connect endpoint (events on connected
    /// accounts, `/ocpi/stripe/connect/webhook`).
    #[arg(long, env = "ROAMPAY_CONNECT_WEBHOOK_SECRET", hide_env_values = true)]
    pub connect_webhook_secret: Option<SecretString>,
    /// The Connect endpoint's secret before a roll, while Stripe may still sign with it:
    /// both verify until it is removed.
    #[arg(
        long,
        env = "ROAMPAY_CONNECT_WEBHOOK_SECRET_PREVIOUS",
        hide_env_values = true
    )]
    pub connect_webhook_secret_previous: Option<SecretString>,
    /// The application fee of connect-mode payments, in basis points (0..=2000), for
    /// workspaces that did not set their own.
    #[arg(long, env = "ROAMPAY_CONNECT_FEE_BPS", default_value_t = 0)]
    pub connect_fee_bps: u32,
}

/// Workspace billing: the platform's own Stripe account sells plans to workspaces. Off
/// when no platform key or no plan is set.
#[derive(Debug, Clone, Args)]
pub struct BillingArgs {
    /// The signing secret of the platform's billing webhook endpoint.
    #[arg(long, env = "ROAMPAY_PLATFORM_WEBHOOK_SECRET", hide_env_values = true)]
    pub platform_webhook_secret: Option<SecretString>,
    /// The billing endpoint's secret before a roll, while Stripe may still sign with it:
    /// both verify until it is removed.
    #[arg(
        long,
        env = "ROAMPAY_PLATFORM_WEBHOOK_SECRET_PREVIOUS",
        hide_env_values = true
    )]
    pub platform_webhook_secret_previous: Option<SecretString>,
    /// Plans and their Stripe prices: `starter=price_…,standard=price_…`.
    #[arg(long, env = "ROAMPAY_PLANS", default_value = "")]
    pub plans: String,
    /// How long a past-due workspace keeps working before it is suspended.
    #[arg(long, env = "ROAMPAY_BILLING_GRACE_SECS", default_value_t = 604_800)]
    pub billing_grace_secs: i64,
    /// How long after cancellation a workspace's data is purged.
    #[arg(
        long,
        env = "ROAMPAY_BILLING_RETENTION_SECS",
        default_value_t = 7_776_000
    )]
    pub billing_retention_secs: i64,
    /// Only trialing, active and past-due workspaces may open new charging intents.
    /// (From the environment: true/false, 1/0, yes/no, on/off.)
    #[arg(long, env = "ROAMPAY_BILLING_REQUIRED", value_parser = BoolishValueParser::new())]
    pub billing_required: bool,
}

/// Card holds: how long Stripe keeps them, and when their lapse is flagged.
#[derive(Debug, Clone, Args)]
pub struct HoldArgs {
    /// How long Stripe keeps an uncaptured card hold (7 days for most cards online).
    #[arg(long, env = "ROAMPAY_HOLD_LIFETIME_SECS", default_value_t = 7 * 86_400)]
    pub hold_lifetime_secs: i64,
    /// Flag a hold this long before it lapses.
    #[arg(long, env = "ROAMPAY_HOLD_WARNING_SECS", default_value_t = 86_400)]
    pub hold_warning_secs: i64,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "ROAMPAY_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Public base URL, used in the webhook URLs shown to admins; default http://<bind>.
    #[arg(long, env = "ROAMPAY_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub stripe: StripeArgs,
    #[command(flatten)]
    pub platform: PlatformArgs,
    #[command(flatten)]
    pub billing: BillingArgs,
    #[command(flatten)]
    pub holds: HoldArgs,
    /// How long the webhook delivery log keeps a delivery (0: no log).
    #[arg(
        long,
        env = "ROAMPAY_DELIVERY_LOG_RETENTION_SECS",
        default_value_t = 2_592_000
    )]
    pub delivery_log_retention_secs: i64,
    /// How long a credential save waits for Stripe before answering `pending`.
    #[arg(long, env = "ROAMPAY_VALIDATION_WAIT_MS", default_value_t = 8_000)]
    pub validation_wait_ms: u64,
    /// How often `pending` credential sets are re-validated.
    #[arg(long, env = "ROAMPAY_REVALIDATE_INTERVAL_SECS", default_value_t = 60)]
    pub revalidate_interval_secs: u64,
    /// How often a `valid` credential set is proven again with Stripe (a key rolled or
    /// deleted in the Dashboard shows without any request).
    #[arg(long, env = "ROAMPAY_REVALIDATE_VALID_SECS", default_value_t = 21_600)]
    pub revalidate_valid_secs: u64,
    /// Webhook timestamp tolerance, both directions; must be positive.
    #[arg(long, env = "ROAMPAY_WEBHOOK_TOLERANCE_SECS", default_value_t = 300)]
    pub webhook_tolerance_secs: i64,
    /// How long a replaced webhook signing secret keeps verifying.
    #[arg(
        long,
        env = "ROAMPAY_WEBHOOK_SECRET_OVERLAP_SECS",
        default_value_t = 86_400
    )]
    pub webhook_secret_overlap_secs: i64,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` name the client (comma-separated
    /// CIDRs; default none: the socket peer is the client).
    #[arg(long, env = "ROAMPAY_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Origins whose browsers may call the driver endpoints (comma-separated; default
    /// none).
    #[arg(long, env = "ROAMPAY_CORS_ALLOWED_ORIGINS", default_value = "")]
    pub cors_allowed_origins: String,
    /// Open connections one client address may hold (a trusted proxy's are not
    /// counted); beyond it a request is answered 429 and the connection closed.
    #[arg(long, env = "ROAMPAY_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 64)]
    pub max_connections_per_client: usize,
    /// How long a request's body may take to arrive before it is answered 408 and the
    /// connection closed.
    #[arg(long, env = "ROAMPAY_BODY_TIMEOUT_SECS", default_value_t = 10)]
    pub body_timeout_secs: u64,
    /// Requests per minute per client address on the public payment endpoints.
    #[arg(long, env = "ROAMPAY_RATE_LIMIT_PER_MIN", default_value_t = 120)]
    pub rate_limit_per_min: u32,
    /// How often the sweep looks at intents still waiting for payment.
    #[arg(long, env = "ROAMPAY_SWEEP_INTERVAL_SECS", default_value_t = 15)]
    pub sweep_interval_secs: u64,
    /// How old a pending intent is before the sweep first asks Stripe about it.
    #[arg(long, env = "ROAMPAY_SWEEP_FIRST_LOOK_SECS", default_value_t = 30)]
    pub sweep_first_look_secs: i64,
    /// Stripe reads per workspace per sweep round.
    #[arg(long, env = "ROAMPAY_SWEEP_PER_WORKSPACE", default_value_t = 10)]
    pub sweep_per_workspace: usize,
    /// How often the session worker runs (expiry, settlement retries, hold lapses).
    #[arg(long, env = "ROAMPAY_WORKER_INTERVAL_SECS", default_value_t = 15)]
    pub worker_interval_secs: u64,
    /// A hold with no session started this long after it was authorized is released as
    /// `expired`.
    #[arg(long, env = "ROAMPAY_HOLD_TIMEOUT_SECS", default_value_t = 900)]
    pub hold_timeout_secs: i64,
    /// A pre-authorization never paid this long after it was created is cancelled in
    /// Stripe and its connector freed (`expired`).
    #[arg(
        long,
        env = "ROAMPAY_PENDING_PAYMENT_TIMEOUT_SECS",
        default_value_t = 600
    )]
    pub pending_payment_timeout_secs: i64,
    /// At most this many guest intents of a workspace wait for payment at once; beyond,
    /// a guest's pre-authorization is refused (429 `too_many_pending_intents`).
    #[arg(long, env = "ROAMPAY_MAX_PENDING_GUEST_INTENTS", default_value_t = 50)]
    pub max_pending_guest_intents: i64,
    /// roampay's OCPI party: the country code (ISO 3166-1 alpha-2) and party id its
    /// credentials name to CPOs, and its business name.
    #[arg(long, env = "ROAMPAY_OCPI_COUNTRY_CODE", default_value = "ZZ")]
    pub ocpi_country_code: String,
    #[arg(long, env = "ROAMPAY_OCPI_PARTY_ID", default_value = "RPY")]
    pub ocpi_party_id: String,
    #[arg(long, env = "ROAMPAY_OCPI_BUSINESS_NAME", default_value = "roampay")]
    pub ocpi_business_name: String,
    /// Per aggregate type, how many aggregates' last states an instance keeps in memory
    /// (commands on them skip reading their events; past it the older half is dropped).
    /// A state idle for longer than the pending-payment timeout is dropped too. A
    /// pre-authorization leaves about 3 KB (its intent and its connector's state).
    #[arg(long, env = "ROAMPAY_REMEMBERED_STATES", default_value_t = 100_000)]
    pub remembered_states: usize,
    /// A capture or release without a definite answer is tried again after this long.
    #[arg(long, env = "ROAMPAY_SETTLE_RETRY_SECS", default_value_t = 30)]
    pub settle_retry_secs: i64,
    /// How often projectors poll for events written by other instances.
    #[arg(long, env = "ROAMPAY_PROJECTION_POLL_MS", default_value_t = 500)]
    pub projection_poll_ms: u64,
    /// Do not run projectors in this process (another instance, or a test, does).
    #[arg(long, env = "ROAMPAY_NO_PROJECTORS", hide = true, value_parser = BoolishValueParser::new())]
    pub no_projectors: bool,
}

/// Creates the data directory (and any missing parent) readable by its owner only: it
/// holds the keys and the SQLite store. An existing directory keeps its mode.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// A secret as configured, as stored in a file of the data directory, or not there yet.
pub enum Found {
    Given(SecretString),
    Stored(SecretString),
    Missing(PathBuf),
}

/// Reads a secret from the environment/flag, else from `file` under the data
/// directory. A file that exists but cannot be read is an error naming it (not a
/// reason to make another).
pub fn find_secret(
    given: Option<&SecretString>,
    data_dir: &Path,
    file: &str,
) -> Result<Found, String> {
    if let Some(s) = given {
        return Ok(Found::Given(s.clone()));
    }
    let path = data_dir.join(file);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Found::Stored(SecretString::from(text.trim().to_string()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Found::Missing(path)),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes a generated secret to `path` (mode 0600; the data directory created when
/// missing), never over an existing file.
pub fn store_secret(path: &Path, value: &str) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("cannot create {}: {e}", path.display());
    if let Some(dir) = path.parent() {
        create_private_dir(dir)
            .map_err(|e| format!("ROAMPAY_DATA_DIR: cannot create {}: {e}", dir.display()))?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).map_err(failed)?;
    f.write_all(value.as_bytes()).map_err(failed)?;
    f.sync_all().map_err(failed)
}

/// An absolute `http://` or `https://` URL with a host, else a line naming `setting`.
pub fn check_http_url(setting: &str, value: &str) -> Result<(), String> {
    let ok = reqwest::Url::parse(value)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    match ok {
        Some(_) => Ok(()),
        None => Err(format!(
            "{setting}: expected an absolute http:// or https:// URL, got `{value}`"
        )),
    }
}
