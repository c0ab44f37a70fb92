//! The soak's samples: the first instance's resident memory, open file descriptors and
//! PostgreSQL connections, once a period; and the slope of a series.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fleet::Fleet;
use super::load::Load;

#[derive(Debug, Clone)]
pub struct Sample {
    pub minute: f64,
    pub rss_mb: f64,
    pub open_fds: f64,
    pub db_connections: i64,
    pub acknowledged: usize,
}

/// Samples every `period` for `total`.
pub async fn every(
    period: Duration,
    total: Duration,
    fleet: Fleet,
    url: String,
    load: Arc<Load>,
) -> Vec<Sample> {
    let http = reqwest::Client::new();
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let name = url.rsplit('/').next().unwrap_or_default().to_string();
    let started = Instant::now();
    let mut samples = Vec::new();
    loop {
        // The last sample is taken a good while before the load stops.
        let next = period * (samples.len() as u32 + 1);
        if next + period / 2 > total {
            break;
        }
        tokio::time::sleep(next.saturating_sub(started.elapsed())).await;
        let Some(base) = fleet.base(0) else { continue };
        let text = match http.get(format!("{base}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => continue,
        };
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        let db_connections: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&name)
        .fetch_one(&db)
        .await
        .unwrap_or(-1);
        let s = Sample {
            minute: started.elapsed().as_secs_f64() / 60.0,
            rss_mb: value("process_resident_memory_bytes") / 1e6,
            open_fds: value("process_open_fds"),
            db_connections,
            acknowledged: load.acknowledged(),
        };
        eprintln!("soak: {s:?}");
        samples.push(s);
    }
    db.close().await;
    samples
}

/// The least-squares slope of `y` over `x`, as the change it makes across the span of
/// `x` relative to the mean of `y` (0.05: grows 5 % over the run).
pub fn relative_change(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let span = points.last().unwrap().0 - points[0].0;
    (sxy / sxx) * span / my
}
