//! One startup for every entry point: the store, keys, vault, Stripe client and
//! application services built from the settings, then (for `serve`) the background
//! jobs and the HTTP server. `reconcile` builds the same services from the same
//! settings, so every setting means the same in both.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use roampay_projections::Db;

use crate::application::connect::ConnectSettings;
use crate::application::ocpi::OcpiSettings;
use crate::application::{Services, Settings};
use crate::config::{
    find_secret, store_secret, Found, HoldArgs, JwtArgs, KeyArgs, PlatformArgs, ServeArgs,
    StoreArgs, StripeArgs,
};
use crate::http::auth::JwtAuth;
use crate::http::{self, AppState};
use crate::infra::clock::SystemClock;
use crate::infra::store::{self, Memory};
use crate::infra::stripe::webhook::Tolerance;
use crate::infra::stripe::{StripeGateway, StripeTransport};
use crate::infra::vault::{DbVault, MasterKey, SecretVault};
use crate::jobs::{self, session_worker::WorkerSettings, sweep::SweepSettings, JobSettings};

pub type AnyError = Box<dyn std::error::Error + Send + Sync>;

pub async fn open_store(args: &StoreArgs) -> Result<Db, AnyError> {
    let wait = Duration::from_millis(args.db_acquire_timeout_ms.max(1));
    let url = args.database_url.as_deref().filter(|u| !u.is_empty());
    store::check_database_url(url)?;
    let db = store::connect_with(url, &args.data_dir, wait)
        .await
        .map_err(|e| {
            // The default store lives in the data directory: a problem there is its.
            let setting = match url {
                Some(_) => "DATABASE_URL",
                None => "ROAMPAY_DATA_DIR",
            };
            format!(
                "{setting}: could not open {}: {e}",
                store::describe(url, &args.data_dir)
            )
        })?;
    store::migrate(&db).await?;
    Ok(db)
}

const MASTER_KEY_FILE: &str = "master.key";

/// The master key (and the previous ones) the store needs. On SQLite a missing key is
/// generated under the data directory, on PostgreSQL it is an error (instances must
/// share one). A key other than the one the store's data keys are wrapped with is
/// refused before anything is written.
async fn master_keys(
    db: &Db,
    keys: &KeyArgs,
    data_dir: &std::path::Path,
) -> Result<(MasterKey, Vec<MasterKey>), AnyError> {
    let parse = |named: &str, text: &secrecy::SecretString| {
        MasterKey::from_secret(text).map_err(|e| format!("{named}: {e}"))
    };
    let (master, generated) =
        match find_secret(keys.master_key.as_ref(), data_dir, MASTER_KEY_FILE)? {
            Found::Given(text) => (parse("ROAMPAY_MASTER_KEY", &text)?, None),
            Found::Stored(text) => {
                let named = data_dir.join(MASTER_KEY_FILE).display().to_string();
                (parse(&named, &text)?, None)
            }
            Found::Missing(_) if matches!(db, Db::Postgres(_)) => {
                return Err(not_generated_on_postgres(
                    "ROAMPAY_MASTER_KEY",
                    "openssl rand -base64 32",
                )
                .into())
            }
            Found::Missing(path) => {
                let text = MasterKey::generate_base64();
                let key = MasterKey::from_base64(&text).expect("a generated key parses");
                (key, Some((path, text)))
            }
        };
    let previous = previous_master_keys(keys)?;
    crate::infra::vault::check_master_keys(db, &master, &previous).await?;
    if let Some((path, text)) = generated {
        store_secret(&path, &text)?;
        tracing::warn!(path = %path.display(), "no ROAMPAY_MASTER_KEY given: generated a master key (keep this file safe and backed up)");
    }
    crate::infra::vault::record_master_key(db, &master).await?;
    Ok((master, previous))
}

/// `ROAMPAY_MASTER_KEY_PREVIOUS` (and its v2 name): the keys before a rotation.
fn previous_master_keys(keys: &KeyArgs) -> Result<Vec<MasterKey>, String> {
    let mut all = vec![];
    for p in [&keys.master_key_previous, &keys.previous_master_keys] {
        all.extend(
            MasterKey::list_from_config(p.as_ref())
                .map_err(|e| format!("ROAMPAY_MASTER_KEY_PREVIOUS: {e}"))?,
        );
    }
    Ok(all)
}

/// `roampay keys rotate-master`: every data key re-wrapped under the key in
/// `new_key_file`, unwrapped with the configured key or a previous one.
pub async fn rotate_master(
    store: &StoreArgs,
    keys: &KeyArgs,
    new_key_file: &std::path::Path,
) -> Result<(crate::infra::vault::Rewrapped, String), AnyError> {
    let text = std::fs::read_to_string(new_key_file).map_err(|e| {
        format!(
            "--new-key-file: cannot read {}: {e}",
            new_key_file.display()
        )
    })?;
    let new = MasterKey::from_base64(&text)
        .map_err(|e| format!("--new-key-file {}: {e}", new_key_file.display()))?;
    let current = match find_secret(keys.master_key.as_ref(), &store.data_dir, MASTER_KEY_FILE)? {
        Found::Given(s) | Found::Stored(s) => {
            MasterKey::from_secret(&s).map_err(|e| format!("ROAMPAY_MASTER_KEY: {e}"))?
        }
        Found::Missing(_) => return Err(
            "ROAMPAY_MASTER_KEY is not set: give the master key the data keys are wrapped with now"
                .into(),
        ),
    };
    let mut old = vec![current];
    old.extend(previous_master_keys(keys)?);
    let db = open_store(store).await?;
    let done = crate::infra::vault::rotate_master(&db, &old, &new, |n| {
        if n > 0 && n % 1000 == 0 {
            eprintln!("{n} data keys re-wrapped so far");
        }
    })
    .await?;
    Ok((done, new.id().to_string()))
}

/// Why `serve` on PostgreSQL does not make a secret up.
fn not_generated_on_postgres(setting: &str, example: &str) -> String {
    format!(
        "{setting} is not set: on PostgreSQL every instance must use the same one, so roampay never generates it; set {setting} on every instance (e.g. `{example}`)"
    )
}

/// The OpenAPI description as `GET /openapi.json` serves it, for `roampay openapi`.
pub fn openapi_json(public_url: &str) -> String {
    let doc = http::openapi::document(public_url.trim_end_matches('/'));
    serde_json::to_string_pretty(&doc).expect("the description serializes")
}

/// The token verifier for `serve`: the configured secret, else the one stored in the
/// data directory, else (SQLite only) a new one stored there. A secret shorter than 32
/// bytes (an empty one included) is refused.
pub fn jwt(
    keys: &JwtArgs,
    data_dir: &std::path::Path,
    postgres: bool,
) -> Result<JwtAuth, AnyError> {
    let secret = match find_secret(keys.jwt_secret.as_ref(), data_dir, JWT_SECRET_FILE)? {
        Found::Given(s) | Found::Stored(s) => s,
        Found::Missing(_) if postgres => {
            return Err(
                not_generated_on_postgres("ROAMPAY_JWT_SECRET", "openssl rand -base64 48").into(),
            )
        }
        Found::Missing(path) => {
            let value = MasterKey::generate_base64();
            store_secret(&path, &value)?;
            tracing::warn!(path = %path.display(), "no ROAMPAY_JWT_SECRET given: generated one");
            secrecy::SecretString::from(value.to_string())
        }
    };
    checked_jwt(keys, data_dir, secret)
}

/// `roampay token`: a token with known scopes only, signed with the configured or
/// stored secret (never a new one).
pub fn mint_token(
    keys: &JwtArgs,
    data_dir: &std::path::Path,
    sub: &str,
    workspaces: &[String],
    scope: &str,
    ttl_secs: i64,
) -> Result<String, AnyError> {
    use crate::http::auth::KNOWN_SCOPES;
    let unknown: Vec<&str> = scope
        .split_whitespace()
        .filter(|s| !KNOWN_SCOPES.contains(s))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "unknown scope {}; known: {}",
            unknown.join(", "),
            KNOWN_SCOPES.join(" ")
        )
        .into());
    }
    Ok(existing_jwt(keys, data_dir)?.issue(sub, workspaces, scope, ttl_secs))
}

/// The token signer for `roampay token`: never creates a secret.
fn existing_jwt(keys: &JwtArgs, data_dir: &std::path::Path) -> Result<JwtAuth, AnyError> {
    let secret = match find_secret(keys.jwt_secret.as_ref(), data_dir, JWT_SECRET_FILE)? {
        Found::Given(s) | Found::Stored(s) => s,
        Found::Missing(stored) => {
            return Err(format!(
                "no JWT secret: set ROAMPAY_JWT_SECRET, or run `roampay serve` once so that {} exists (`roampay token` never creates one)",
                stored.display()
            )
            .into())
        }
    };
    checked_jwt(keys, data_dir, secret)
}

const JWT_SECRET_FILE: &str = "jwt.secret";

fn checked_jwt(
    keys: &JwtArgs,
    data_dir: &std::path::Path,
    secret: secrecy::SecretString,
) -> Result<JwtAuth, AnyError> {
    if !JwtAuth::strong_enough(&secret) {
        let named = match keys.jwt_secret {
            Some(_) => "ROAMPAY_JWT_SECRET (--jwt-secret)".to_string(),
            None => data_dir.join(JWT_SECRET_FILE).display().to_string(),
        };
        return Err(format!(
            "{named} is shorter than {} bytes: an HS256 secret that short can be guessed; set a longer one (e.g. `openssl rand -base64 48`)",
            crate::http::auth::MIN_SECRET_BYTES
        )
        .into());
    }
    Ok(
        JwtAuth::new(&secret, keys.jwt_issuer.clone(), keys.jwt_audience.clone())
            .with_leeway(keys.jwt_leeway_secs),
    )
}

/// The parts every entry point shares.
pub struct Core<'a> {
    pub store: &'a StoreArgs,
    pub keys: &'a KeyArgs,
    pub stripe: &'a StripeArgs,
    pub holds: &'a HoldArgs,
}

/// The application services over the configured store, vault and Stripe.
pub async fn services(
    core: Core<'_>,
    settings: impl FnOnce(&HoldArgs) -> Settings,
) -> Result<Arc<Services>, AnyError> {
    let db = open_store(core.store).await?;
    let (master, previous) = master_keys(&db, core.keys, &core.store.data_dir).await?;
    let vault: Arc<dyn SecretVault> = Arc::new(DbVault::new(db.clone(), master, previous));
    let stripe: Arc<dyn StripeGateway> = Arc::new(StripeTransport::new(
        &core.stripe.stripe_api_base,
        Duration::from_millis(core.stripe.stripe_timeout_ms),
        core.stripe.stripe_max_attempts,
    ));
    let services = Services::new(
        db,
        vault,
        stripe,
        Arc::new(SystemClock),
        settings(core.holds),
    );
    services.projector.ensure_indexes().await?;
    Ok(services)
}

fn platform_transport(stripe: &StripeArgs) -> Arc<StripeTransport> {
    Arc::new(StripeTransport::new(
        &stripe.stripe_api_base,
        Duration::from_millis(stripe.stripe_timeout_ms),
        stripe.stripe_max_attempts,
    ))
}

/// A platform endpoint's signing secrets, the current one first; none = not configured.
fn endpoint_secrets(
    current: &Option<secrecy::SecretString>,
    previous: &Option<secrecy::SecretString>,
    name: &str,
) -> Result<Vec<secrecy::SecretString>, AnyError> {
    match (current, previous) {
        (None, Some(_)) => Err(format!("{name}_PREVIOUS is set without {name}").into()),
        _ => Ok(current.iter().chain(previous).cloned().collect()),
    }
}

/// A platform endpoint's signing secret, when set, is a real one (see
/// [`crate::infra::stripe::webhook::platform_secret_problem`]).
fn check_platform_secret(name: &str, value: &Option<secrecy::SecretString>) -> Result<(), String> {
    let Some(problem) = value
        .as_ref()
        .and_then(crate::infra::stripe::webhook::platform_secret_problem)
    else {
        return Ok(());
    };
    Err(format!(
        "{name} is {problem}: expected whsec_ followed by at least 16 characters (the endpoint's signing secret from the Stripe Dashboard); remove the setting to turn it off"
    ))
}

/// Every platform webhook secret that is set is a real one.
fn check_platform_secrets(p: &PlatformArgs, b: &crate::config::BillingArgs) -> Result<(), String> {
    check_platform_secret(
        "ROAMPAY_PLATFORM_WEBHOOK_SECRET",
        &b.platform_webhook_secret,
    )?;
    check_platform_secret(
        "ROAMPAY_PLATFORM_WEBHOOK_SECRET_PREVIOUS",
        &b.platform_webhook_secret_previous,
    )?;
    check_platform_secret("ROAMPAY_CONNECT_WEBHOOK_SECRET", &p.connect_webhook_secret)?;
    check_platform_secret(
        "ROAMPAY_CONNECT_WEBHOOK_SECRET_PREVIOUS",
        &p.connect_webhook_secret_previous,
    )
}

/// Billing when a platform key and plans are set (its plans checked first).
fn billing_settings(
    platform: &PlatformArgs,
    args: &crate::config::BillingArgs,
    stripe: &StripeArgs,
) -> Result<Option<crate::application::billing::BillingSettings>, AnyError> {
    let Some(key) = platform.platform_stripe_secret_key.clone() else {
        return Ok(None);
    };
    let plans = crate::application::billing::parse_plans(&args.plans)?;
    if plans.is_empty() {
        return Ok(None); // the platform key serves Connect only
    }
    let gateway = platform_transport(stripe);
    Ok(Some(crate::application::billing::BillingSettings {
        platform_key: key,
        webhook_secrets: endpoint_secrets(
            &args.platform_webhook_secret,
            &args.platform_webhook_secret_previous,
            "ROAMPAY_PLATFORM_WEBHOOK_SECRET",
        )?,
        plans,
        grace: chrono::Duration::seconds(args.billing_grace_secs.max(0)),
        retention: chrono::Duration::seconds(args.billing_retention_secs.max(0)),
        required: args.billing_required,
        gateway,
    }))
}

/// Stripe Connect when the platform's secret and publishable keys are set (of the same
/// mode, the fee within bounds).
pub fn connect_settings(
    platform: &PlatformArgs,
    stripe: &StripeArgs,
) -> Result<Option<ConnectSettings>, AnyError> {
    use crate::domain::workspace_stripe_profile::credentials::PublishableKey;
    let (Some(key), Some(pk)) = (
        &platform.platform_stripe_secret_key,
        &platform.platform_publishable_key,
    ) else {
        return Ok(None);
    };
    let mode = crate::infra::stripe::key_mode(key).ok_or(
        "ROAMPAY_PLATFORM_STRIPE_SECRET_KEY: expected sk_test_…, sk_live_…, rk_test_… or rk_live_…",
    )?;
    let publishable = PublishableKey::parse(pk)
        .map_err(|_| "ROAMPAY_PLATFORM_PUBLISHABLE_KEY: expected pk_test_… or pk_live_…")?;
    if mode != publishable.mode() {
        return Err("the platform's secret and publishable keys are of different modes".into());
    }
    if platform.connect_fee_bps > crate::application::connect::MAX_FEE_BPS {
        return Err("ROAMPAY_CONNECT_FEE_BPS: at most 2000 (20 %)".into());
    }
    Ok(Some(ConnectSettings {
        platform_key: key.clone(),
        publishable_key: publishable.as_str().to_string(),
        mode,
        webhook_secrets: endpoint_secrets(
            &platform.connect_webhook_secret,
            &platform.connect_webhook_secret_previous,
            "ROAMPAY_CONNECT_WEBHOOK_SECRET",
        )?,
        default_fee_bps: platform.connect_fee_bps,
        gateway: platform_transport(stripe),
    }))
}

fn hold_settings(h: &HoldArgs) -> (chrono::Duration, chrono::Duration) {
    (
        chrono::Duration::seconds(h.hold_lifetime_secs.max(1)),
        chrono::Duration::seconds(h.hold_warning_secs.max(0)),
    )
}

/// roampay's OCPI party as OCPI allows it: a two-letter country code, a three-character
/// party id.
fn check_ocpi_party(country_code: &str, party_id: &str) -> Result<(), String> {
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if !ok(country_code, 2) {
        return Err(format!(
            "ROAMPAY_OCPI_COUNTRY_CODE: {country_code:?} is not an ISO 3166-1 alpha-2 code"
        ));
    }
    if !ok(party_id, 3) {
        return Err(format!(
            "ROAMPAY_OCPI_PARTY_ID: {party_id:?} is not three letters or digits"
        ));
    }
    Ok(())
}

/// What a command-line run remembers per aggregate type (it touches few aggregates).
const REMEMBERED_OFFLINE: usize = 10_000;

/// Settings for work without a server (the command line): webhook settings unused.
pub fn offline_settings(holds: &HoldArgs, connect: Option<ConnectSettings>) -> Settings {
    let (hold_lifetime, hold_warning) = hold_settings(holds);
    Settings {
        webhook_tolerance: Tolerance::new(300).expect("positive"),
        webhook_overlap: chrono::Duration::zero(),
        public_url: String::new(),
        validation_wait: Duration::ZERO,
        hold_lifetime,
        hold_warning,
        max_pending_guest_intents: i64::MAX,
        memory: Memory {
            capacity: REMEMBERED_OFFLINE,
            idle: Duration::from_secs(600),
        },
        billing: None,
        connect,
        delivery_log: false,
        ocpi: OcpiSettings {
            public_url: String::new(),
            country_code: "ZZ".into(),
            party_id: "RPY".into(),
            business_name: "roampay".into(),
        },
    }
}

/// A bound, ready-to-run service.
pub struct Application {
    pub addr: SocketAddr,
    pub backend: &'static str,
    server: actix_web::dev::Server,
    _jobs: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    /// Builds everything `serve` runs; refuses bad settings before touching the store.
    pub async fn build(args: ServeArgs) -> Result<Self, AnyError> {
        // A tolerance of 0 or less would refuse every webhook; a short JWT secret would
        // let anyone mint tokens.
        let tolerance = Tolerance::new(args.webhook_tolerance_secs)?;
        check_platform_secrets(&args.platform, &args.billing)?;
        crate::config::check_http_url("STRIPE_API_BASE", &args.stripe.stripe_api_base)?;
        if let Some(url) = &args.public_url {
            crate::config::check_http_url("ROAMPAY_PUBLIC_URL", url)?;
        }
        crate::telemetry::check_otlp_endpoints()?;
        check_ocpi_party(&args.ocpi_country_code, &args.ocpi_party_id)?;
        let trusted_proxies = http::client::TrustedProxies::parse(&args.trusted_proxies)?;
        let cors_origins = http::parse_origins(&args.cors_allowed_origins)?;
        let billing = billing_settings(&args.platform, &args.billing, &args.stripe)?;
        let connect = connect_settings(&args.platform, &args.stripe)?;
        if let Some(given) = &args.keys.jwt.jwt_secret {
            checked_jwt(&args.keys.jwt, &args.store.data_dir, given.clone())?;
        }
        let listener = std::net::TcpListener::bind(&args.bind)
            .map_err(|e| format!("ROAMPAY_BIND: cannot listen on {}: {e}", args.bind))?;
        let addr = listener.local_addr()?;
        let public_url = args
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .to_string();
        let core = Core {
            store: &args.store,
            keys: &args.keys,
            stripe: &args.stripe,
            holds: &args.holds,
        };
        let services = services(core, |holds| {
            let (hold_lifetime, hold_warning) = hold_settings(holds);
            Settings {
                webhook_tolerance: tolerance,
                webhook_overlap: chrono::Duration::seconds(args.webhook_secret_overlap_secs.max(0)),
                public_url: public_url.clone(),
                validation_wait: Duration::from_millis(args.validation_wait_ms),
                hold_lifetime,
                hold_warning,
                max_pending_guest_intents: args.max_pending_guest_intents.max(0),
                memory: Memory {
                    capacity: args.remembered_states,
                    idle: Duration::from_secs(args.pending_payment_timeout_secs.max(60) as u64),
                },
                billing,
                connect,
                delivery_log: args.delivery_log_retention_secs > 0,
                ocpi: OcpiSettings {
                    public_url: public_url.clone(),
                    country_code: args.ocpi_country_code.to_ascii_uppercase(),
                    party_id: args.ocpi_party_id.to_ascii_uppercase(),
                    business_name: args.ocpi_business_name.clone(),
                },
            }
        })
        .await?;
        // Key files are written only once the settings and the store proved good.
        let state = AppState {
            auth: jwt(
                &args.keys.jwt,
                &args.store.data_dir,
                matches!(services.db, Db::Postgres(_)),
            )?,
            rate_limiter: http::driver::rate_limiter(args.rate_limit_per_min),
            webhook_refusals: http::driver::rate_limiter(args.rate_limit_per_min),
            trusted_proxies,
            services: services.clone(),
        };
        let backend = services.db.backend();
        // One line that says what runs (never a secret).
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            store = backend,
            bind = %addr,
            public_url = %services.settings.public_url,
            otlp = crate::telemetry::otlp_configured(),
            billing = services.settings.billing.is_some(),
            cors = !cors_origins.is_empty(),
            trusted_proxies = !state.trusted_proxies.is_empty(),
            "roampay starting"
        );
        let mut jobs = jobs::start(services, job_settings(&args));
        let limiters = [state.rate_limiter.clone(), state.webhook_refusals.clone()];
        jobs.push(jobs::supervise(
            "rate_limit_prune",
            jobs::RESTART_PAUSE,
            move || {
                let limiters = limiters.clone();
                async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        limiters.iter().for_each(|l| http::driver::prune(l));
                    }
                }
            },
        ));
        Ok(Self {
            addr,
            backend,
            server: http::server(
                listener,
                state,
                http::ServerSettings {
                    body_timeout: http::guard::BodyTimeout(Duration::from_secs(
                        args.body_timeout_secs.max(1),
                    )),
                    cors_origins,
                    connections_per_client: args.max_connections_per_client,
                },
            )?,
            _jobs: jobs,
        })
    }

    /// Serves until the process is told to stop.
    pub async fn run_until_stopped(self) -> Result<(), AnyError> {
        Ok(self.server.await?)
    }
}

fn job_settings(args: &ServeArgs) -> JobSettings {
    JobSettings {
        sweep: SweepSettings {
            interval: Duration::from_secs(args.sweep_interval_secs.max(1)),
            first_look: chrono::Duration::seconds(args.sweep_first_look_secs.max(0)),
            per_workspace: args.sweep_per_workspace.max(1),
        },
        worker: WorkerSettings {
            interval: Duration::from_secs(args.worker_interval_secs.max(1)),
            hold_timeout: chrono::Duration::seconds(args.hold_timeout_secs.max(1)),
            pending_payment_timeout: chrono::Duration::seconds(
                args.pending_payment_timeout_secs.max(1),
            ),
            settle_retry: chrono::Duration::seconds(args.settle_retry_secs.max(0)),
        },
        revalidate_interval: Duration::from_secs(args.revalidate_interval_secs.max(1)),
        revalidate_valid: chrono::Duration::seconds(args.revalidate_valid_secs.max(1) as i64),
        projection_poll: (!args.no_projectors)
            .then(|| Duration::from_millis(args.projection_poll_ms)),
        delivery_log_retention: chrono::Duration::seconds(args.delivery_log_retention_secs.max(0)),
    }
}
