//! The command line: `serve`, `migrate`, `replay`, `dead-letters`, `reconcile`, `keys`,
//! `token`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use roampay_projections::Projector;

use crate::config::{JwtArgs, ServeArgs, StoreArgs};
use crate::startup::{self, AnyError, Application};

#[derive(Debug, Parser)]
#[command(
    name = "roampay",
    version,
    about = "Payment orchestration for workspace-owned Stripe accounts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (runs migrations first).
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(StoreArgs),
    /// Rebuild projections from the first event.
    Replay {
        #[command(flatten)]
        store: StoreArgs,
        /// Only this projection (default: all).
        #[arg(long)]
        projection: Option<String>,
    },
    /// Print the OpenAPI description (what GET /openapi.json serves).
    Openapi {
        /// The server URL the description names.
        #[arg(
            long,
            env = "ROAMPAY_PUBLIC_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        public_url: String,
    },
    /// List the events a projection set aside (and with `--retry`, try them again).
    DeadLetters {
        #[command(flatten)]
        store: StoreArgs,
        /// Only this projection (default: all).
        #[arg(long)]
        projection: Option<String>,
        /// Apply each again, alone; those that apply now leave the list.
        #[arg(long)]
        retry: bool,
    },
    /// Compare a workspace's PaymentIntents in Stripe with the event log; exits 1 when
    /// they disagree (after `--apply`, when something is left that it could not fix).
    Reconcile(Box<crate::reconcile::ReconcileArgs>),
    /// Master key management.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print a bearer token signed with the configured secret (never a new one).
    ///
    /// Example: roampay token --sub alice@example.com --workspace ws-1 --scope "roaming:read roaming:write"
    Token {
        /// Where `serve` keeps the generated secret (`jwt.secret`), when
        /// `ROAMPAY_JWT_SECRET` is not set.
        #[arg(long, env = "ROAMPAY_DATA_DIR", default_value = "./data")]
        data_dir: std::path::PathBuf,
        #[command(flatten)]
        keys: JwtArgs,
        /// The actor recorded in the audit trail.
        #[arg(long)]
        sub: String,
        /// A workspace the token may act on (repeat, or `*` for platform staff).
        #[arg(long = "workspace", required = true)]
        workspaces: Vec<String>,
        /// Space-separated scopes, e.g. "roaming:read roaming:write".
        #[arg(long)]
        scope: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: i64,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Re-wrap every workspace's data key under a new master key, while instances run
    /// (give them the new key as ROAMPAY_MASTER_KEY and the old one as
    /// ROAMPAY_MASTER_KEY_PREVIOUS first). Resumable; prints counts.
    ///
    /// Example: openssl rand -base64 32 > new.key && roampay keys rotate-master --new-key-file new.key
    RotateMaster {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        keys: crate::config::KeyArgs,
        /// The new master key: 32 random bytes in base64 (`openssl rand -base64 32`).
        #[arg(long)]
        new_key_file: std::path::PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = crate::telemetry::init();
    warn_about_secret_flags(std::env::args());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(run(cli.command));
    drop(runtime);
    telemetry.shutdown();
    match outcome {
        Ok(code) => code,
        Err(e) => {
            // One line (JSON when stderr is not a terminal), with its context.
            tracing::error!(error = %e, "roampay failed");
            // 1 is `reconcile`'s "they disagree"; trouble is 2, as with diff(1).
            ExitCode::from(2)
        }
    }
}

/// Secrets given as flags are visible to every user of the machine (`ps`): said once
/// at start, naming the flags (never their values).
fn warn_about_secret_flags(args: impl Iterator<Item = String>) {
    const SECRET_FLAGS: [&str; 4] = [
        "--master-key",
        "--master-key-previous",
        "--previous-master-keys",
        "--jwt-secret",
    ];
    let given: Vec<String> = args
        .filter_map(|a| {
            let flag = a.split('=').next().unwrap_or_default().to_string();
            SECRET_FLAGS.contains(&flag.as_str()).then_some(flag)
        })
        .collect();
    if !given.is_empty() {
        tracing::warn!(
            flags = %given.join(" "),
            "secrets given as command-line flags are visible to other users of this machine (ps, /proc); use the environment (ROAMPAY_MASTER_KEY, ROAMPAY_MASTER_KEY_PREVIOUS, ROAMPAY_JWT_SECRET) or the files in the data directory"
        );
    }
}

async fn run(command: Command) -> Result<ExitCode, AnyError> {
    match command {
        Command::Serve(args) => {
            let app = Application::build(*args).await?;
            // The line tests and scripts wait for.
            println!(
                "roampay listening on http://{} (store: {})",
                app.addr, app.backend
            );
            app.run_until_stopped().await?;
        }
        Command::Migrate(store) => {
            let db = startup::open_store(&store).await?;
            println!("migrations applied ({})", db.backend());
        }
        Command::Replay { store, projection } => replay(&store, projection.as_deref()).await?,
        Command::Openapi { public_url } => println!("{}", startup::openapi_json(&public_url)),
        Command::DeadLetters {
            store,
            projection,
            retry,
        } => dead_letters(&store, projection.as_deref(), retry).await?,
        Command::Reconcile(args) => {
            let (json, apply) = (args.json, args.apply);
            let report = crate::reconcile::run(*args).await?;
            if json {
                println!("{}", crate::reconcile::render_json(&report));
            } else {
                print!("{}", crate::reconcile::render_text(&report, apply));
            }
            if report.open() > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Keys(KeysCommand::RotateMaster {
            store,
            keys,
            new_key_file,
        }) => {
            let (done, new_id) = startup::rotate_master(&store, &keys, &new_key_file).await?;
            println!(
                "re-wrapped {} data keys under master key {new_id} ({} already were); the store now needs master key {new_id}: set ROAMPAY_MASTER_KEY to the new key on every instance, then remove ROAMPAY_MASTER_KEY_PREVIOUS",
                done.rewrapped, done.already
            );
        }
        Command::Token {
            data_dir,
            keys,
            sub,
            workspaces,
            scope,
            ttl_secs,
        } => {
            let token = startup::mint_token(&keys, &data_dir, &sub, &workspaces, &scope, ttl_secs)?;
            println!("{token}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A projection named on the command line must exist.
fn known_projection(only: Option<&str>) -> Result<(), AnyError> {
    let names: Vec<&'static str> = roampay_projections::all()
        .iter()
        .map(|p| p.name())
        .collect();
    match only {
        Some(name) if !names.contains(&name) => {
            Err(format!("unknown projection {name}; known: {}", names.join(", ")).into())
        }
        _ => Ok(()),
    }
}

async fn dead_letters(store: &StoreArgs, only: Option<&str>, retry: bool) -> Result<(), AnyError> {
    known_projection(only)?;
    let db = startup::open_store(store).await?;
    if retry {
        let projector = Projector::new(db.clone(), roampay_projections::all(), 1);
        let (applied, still) = projector.retry_dead_letters(only).await?;
        println!("{applied} applied, {still} still set aside");
    }
    let letters = roampay_projections::dead_letters::list(&db, only).await?;
    if letters.is_empty() {
        println!("no dead letters");
    }
    for d in letters {
        println!(
            "{}\tseq {} (tx {})\t{} {}\t{}\tset aside {}: {}",
            d.projection,
            d.seq,
            d.tx,
            d.aggregate_type,
            d.aggregate_id,
            d.event_type,
            d.recorded_at.to_rfc3339(),
            d.error
        );
    }
    Ok(())
}

async fn replay(store: &StoreArgs, only: Option<&str>) -> Result<(), AnyError> {
    known_projection(only)?;
    let db = startup::open_store(store).await?;
    let all = roampay_projections::all();
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|p| only.is_none_or(|n| p.name() == n))
        .collect();
    let count = chosen.len() as u64;
    let projector = Projector::new(db.clone(), chosen, roampay_projections::REPLAY_BATCH);
    let total = roampay_projections::log::count(&db).await? as u64 * count;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message("replaying");
    let started = std::time::Instant::now();
    let applied = projector.rebuild(|n| bar.inc(n)).await?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replayed {applied} event applications into {} in {secs:.2}s ({:.0} events/s)",
        projector.names().join(", "),
        applied as f64 / secs.max(1e-9)
    );
    Ok(())
}
