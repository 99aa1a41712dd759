//! `GET /get_data_source`: the knowledge sources the agent can search.

use actix_web::{HttpResponse, web};

use super::AppState;
use super::chat::cors;

pub fn routes(config: &mut web::ServiceConfig, state: &AppState) {
    config.service(
        web::resource("/get_data_source")
            .wrap(cors(&state.config.http.cors_origins))
            .route(web::get().to(data_sources)),
    );
}

async fn data_sources(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.data_sources.as_ref())
}
