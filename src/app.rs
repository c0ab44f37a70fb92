//! Wiring: store, vault, Stripe, aggregates, projectors, background work, HTTP server.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{middleware, web, App, HttpServer};
use roampay_projections::{on_db, Db, Projector};

use crate::charging_intent::IntentServices;
use crate::config::{secret_or_file, KeyArgs, ServeArgs, StoreArgs};
use crate::http::auth::JwtAuth;
use crate::http::{self, AppState};
use crate::store::{self, Aggregates, Metadata};
use crate::stripe::webhook::Tolerance;
use crate::stripe::{StripeGateway, StripeTransport};
use crate::vault::{DbVault, MasterKey};
use crate::workspace_stripe_profile::{
    ProfileServices, ValidateWorkspaceStripeCredentials, ValidationScope,
    WorkspaceStripeProfileCommand,
};

pub type AnyError = Box<dyn std::error::Error + Send + Sync>;

pub async fn open_store(args: &StoreArgs) -> Result<Db, AnyError> {
    let db = store::connect(args.database_url.as_deref(), &args.data_dir).await?;
    store::migrate(&db).await?;
    Ok(db)
}

pub fn master_keys(
    keys: &KeyArgs,
    data_dir: &std::path::Path,
) -> Result<(MasterKey, Vec<MasterKey>), AnyError> {
    let (text, created) = secret_or_file(keys.master_key.as_ref(), data_dir, "master.key", || {
        MasterKey::generate_base64().to_string()
    })?;
    if let Some(path) = created {
        tracing::warn!(path = %path.display(), "no ROAMPAY_MASTER_KEY given: generated a master key (keep this file safe and backed up)");
    }
    Ok(MasterKey::from_config(
        &text,
        keys.previous_master_keys.as_ref(),
    )?)
}

pub fn jwt(keys: &KeyArgs, data_dir: &std::path::Path) -> Result<JwtAuth, AnyError> {
    let (secret, created) =
        secret_or_file(keys.jwt_secret.as_ref(), data_dir, "jwt.secret", || {
            MasterKey::generate_base64().to_string()
        })?;
    if let Some(path) = created {
        tracing::warn!(path = %path.display(), "no ROAMPAY_JWT_SECRET given: generated one");
    }
    Ok(JwtAuth::new(
        &secret,
        keys.jwt_issuer.clone(),
        keys.jwt_audience.clone(),
    ))
}

/// Re-validates credential sets left `pending` (Stripe was unreachable).
async fn revalidate_pending(state: web::Data<AppState>, interval: Duration) {
    let meta = Metadata {
        actor: "system:revalidator".into(),
        request_id: String::new(),
    };
    loop {
        tokio::time::sleep(interval).await;
        let pending: Result<Vec<String>, sqlx::Error> = on_db!(&state.db, pool => sqlx::query_scalar(
            "SELECT workspace_id FROM credential_health WHERE status = 'pending' ORDER BY updated_at LIMIT 100")
            .fetch_all(pool).await);
        let pending = match pending {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "could not list pending credential sets");
                continue;
            }
        };
        for ws in pending {
            let cmd = WorkspaceStripeProfileCommand::ValidateWorkspaceStripeCredentials(
                ValidateWorkspaceStripeCredentials {
                    workspace_id: ws.clone(),
                    scope: ValidationScope::OnlyPending,
                    at: chrono::Utc::now(),
                },
            );
            if let Err(e) = state.profiles.execute(&ws, cmd, &meta).await {
                tracing::warn!(workspace_id = %ws, error = %e, "background validation failed");
            }
        }
        state.projector.nudge();
    }
}

pub async fn serve(args: ServeArgs) -> Result<(), AnyError> {
    // Refused before anything else: a tolerance of 0 or less would refuse every webhook.
    let tolerance = Tolerance::new(args.webhook_tolerance_secs)?;
    let db = open_store(&args.store).await?;
    let (master, previous) = master_keys(&args.keys, &args.store.data_dir)?;
    let auth = jwt(&args.keys, &args.store.data_dir)?;
    let vault: Arc<dyn crate::vault::SecretVault> =
        Arc::new(DbVault::new(db.clone(), master, previous));
    let stripe: Arc<dyn StripeGateway> = Arc::new(StripeTransport::new(
        &args.stripe_api_base,
        Duration::from_millis(args.stripe_timeout_ms),
        args.stripe_max_attempts,
    ));
    let services = ProfileServices {
        vault: vault.clone(),
        stripe: stripe.clone(),
    };
    let intent_services = IntentServices::new(stripe.clone());
    let projector = Projector::new(db.clone(), roampay_projections::all(), 1000);
    projector.ensure_indexes().await?;

    let listener = std::net::TcpListener::bind(&args.bind)?;
    let addr = listener.local_addr()?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_string();
    let state = web::Data::new(AppState {
        db: db.clone(),
        profiles: Aggregates::new(&db, services),
        locations: Aggregates::new(&db, ()),
        connectors: Aggregates::new(&db, ()),
        intents: Aggregates::new(&db, intent_services.clone()),
        rejections: Aggregates::new(&db, ()),
        intent_services,
        vault,
        stripe,
        webhook_tolerance: tolerance,
        webhook_overlap: chrono::Duration::seconds(args.webhook_secret_overlap_secs.max(0)),
        rate_limiter: http::driver::rate_limiter(args.rate_limit_per_min),
        projector: projector.clone(),
        auth,
        public_url,
        validation_wait: Duration::from_millis(args.validation_wait_ms),
    });

    if !args.no_projectors {
        tokio::spawn(
            projector
                .clone()
                .run_forever(Duration::from_millis(args.projection_poll_ms)),
        );
    }
    tokio::spawn(crate::sweep::run(
        state.clone(),
        crate::sweep::SweepSettings {
            interval: Duration::from_secs(args.sweep_interval_secs.max(1)),
            first_look: chrono::Duration::seconds(args.sweep_first_look_secs.max(0)),
            per_workspace: args.sweep_per_workspace.max(1),
        },
    ));
    tokio::spawn(crate::session_worker::run(
        state.clone(),
        crate::session_worker::WorkerSettings {
            interval: Duration::from_secs(args.worker_interval_secs.max(1)),
            hold_timeout: chrono::Duration::seconds(args.hold_timeout_secs.max(1)),
            settle_retry: chrono::Duration::seconds(args.settle_retry_secs.max(0)),
            hold_lifetime: chrono::Duration::seconds(args.hold_lifetime_secs.max(1)),
            hold_warning: chrono::Duration::seconds(args.hold_warning_secs.max(0)),
        },
    ));
    tokio::spawn(revalidate_pending(
        state.clone(),
        Duration::from_secs(args.revalidate_interval_secs.max(1)),
    ));

    let http_metrics = actix_web_prom::PrometheusMetricsBuilder::new(crate::metrics::NAMESPACE)
        .registry(crate::metrics::global().registry.clone())
        .mask_unmatched_patterns("unmatched")
        .exclude("/metrics")
        .build()?;
    let openapi = <http::openapi::ApiDoc as utoipa::OpenApi>::openapi();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(middleware::from_fn(http::request_id::middleware))
            .wrap(http_metrics.clone())
            .configure(http::routes)
            .service(
                utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}")
                    .url("/openapi.json", openapi.clone())
                    // Swagger UI would otherwise ask validator.swagger.io about the spec.
                    .config(
                        utoipa_swagger_ui::Config::new(["/openapi.json"]).validator_url("none"),
                    ),
            )
            .route("/docs", web::get().to(http::openapi::docs_redirect))
            .default_service(web::to(http::not_found))
    })
    .listen(listener)?
    .run();
    crate::cli::announce(addr, db.backend());
    server.await?;
    Ok(())
}
