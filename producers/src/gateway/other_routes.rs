//! The gateway's routes other than publishing: `/healthz`, `/readyz`, `/metrics`, the 404 and
//! 405 answers, and what a panicking handler's caller gets.

use std::sync::Arc;

use axum::Json as JsonResponse;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::GatewayState;
use super::error::ApiError;

/// Any other path: 404 with the routes.
pub(crate) async fn not_found() -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route: POST /v1/events/{event_type}, POST /v1/events/{event_type}/batch, POST /v1/batch, \
         GET /healthz, GET /readyz, GET /metrics",
    )
    .into_response()
}

/// A known path with another method: 405.
pub(crate) async fn method_not_allowed() -> Response {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method")
        .into_response()
}

/// `GET /healthz`: the process answers.
pub(crate) async fn healthz() -> Response {
    (StatusCode::OK, JsonResponse(serde_json::json!({"status": "ok"}))).into_response()
}

/// `GET /readyz`: 200 when the last probe reached Kafka and the registry, else 503; the body
/// says what each check saw.
pub(crate) async fn readyz(State(gw): State<Arc<GatewayState>>) -> Response {
    let report = gw.readiness.report();
    let status = if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, JsonResponse(report)).into_response()
}

/// `GET /metrics`: the Prometheus text format, when the state has a recorder handle.
pub(crate) async fn metrics(State(gw): State<Arc<GatewayState>>) -> Response {
    let Some(handle) = &gw.metrics else {
        return ApiError::new(StatusCode::NOT_FOUND, "metrics_disabled", "this gateway exports no metrics")
            .into_response();
    };
    let mut text = Vec::new();
    match handle.render_to_write(&mut text) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => ApiError::internal(format!("rendering metrics: {e}")).into_response(),
    }
}

/// What the caller of a panicking handler gets (the panic itself is logged): a bug, answered as
/// one instead of a dropped connection.
pub(crate) fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %what, "a gateway handler panicked: this is a bug");
    ApiError::internal("internal error").into_response()
}
