//! `GET /metrics`: Prometheus text. Totals come from the same counters as
//! `/admin/stats`; turn latencies are histograms the sessions record. No label
//! names a session, so the series stay few however many users there are.

use actix_web::{HttpResponse, web};
use metrics::{counter, gauge};

use super::AppState;
use super::admin::collect;

pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/metrics", web::get().to(prometheus_metrics));
}

async fn prometheus_metrics(state: web::Data<AppState>) -> HttpResponse {
    let stats = collect(&state).await;
    gauge!("parlor_sessions_active").set(stats.sessions.active as f64);
    counter!("parlor_sessions_created_total").absolute(stats.sessions.created_total);
    counter!("parlor_turns_started_total").absolute(stats.turns.started_total);
    counter!("parlor_turns_completed_total").absolute(stats.turns.completed_total);
    counter!("parlor_turns_failed_total").absolute(stats.turns.failed_total);
    counter!("parlor_turns_cancelled_total").absolute(stats.turns.cancelled_total);
    gauge!("parlor_workers_size").set(stats.workers.size as f64);
    gauge!("parlor_workers_busy").set(stats.workers.busy as f64);
    counter!("parlor_worker_restarts_total").absolute(stats.workers.restarts_total);
    gauge!("parlor_broker_connected").set(if stats.broker.connected { 1.0 } else { 0.0 });
    counter!("parlor_broker_published_total").absolute(stats.broker.published_total);
    counter!("parlor_broker_consumed_total").absolute(stats.broker.consumed_total);
    counter!("parlor_broker_redelivered_total").absolute(stats.broker.redelivered_total);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
