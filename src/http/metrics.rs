//! `GET /metrics`: Prometheus text. It only renders: each series is recorded where
//! its event happens (see [`crate::counters`]), so a scrape computes nothing and
//! changes nothing. No label names a session, so the series stay few however many
//! users there are.

use actix_web::{HttpResponse, web};
use metrics_exporter_prometheus::PrometheusHandle;

pub fn routes(config: &mut web::ServiceConfig, metrics: PrometheusHandle) {
    config
        .app_data(web::Data::new(metrics))
        .route("/metrics", web::get().to(prometheus_metrics));
}

async fn prometheus_metrics(metrics: web::Data<PrometheusHandle>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.render())
}
