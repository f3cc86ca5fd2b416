//! The API's JSON request bodies: a JSON object, read into the handler's type. serde reads a
//! struct from an array too (`[null, null]` as its first fields), which a client never means;
//! that, and a body that is not JSON or not the type's, is refused with the API's error shape.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, OptionalFromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ApiError;

/// A JSON object body read into `T` (`Option<JsonObject<T>>`: none when the request has no
/// `Content-Type`, as axum's `Json`).
pub struct JsonObject<T>(pub T);

fn read<T: DeserializeOwned>(v: Value) -> Result<JsonObject<T>, ApiError> {
    let unprocessable =
        |detail: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", detail);
    if !v.is_object() {
        return Err(unprocessable("the body must be a JSON object".into()));
    }
    serde_json::from_value(v)
        .map(JsonObject)
        .map_err(|e| unprocessable(e.to_string()))
}

fn refused(e: JsonRejection) -> ApiError {
    ApiError::new(e.status(), super::error_code(e.status()), e.body_text())
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonObject<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(v) = <Json<Value> as FromRequest<S>>::from_request(req, state)
            .await
            .map_err(refused)?;
        read(v)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> OptionalFromRequest<S> for JsonObject<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        match <Json<Value> as OptionalFromRequest<S>>::from_request(req, state)
            .await
            .map_err(refused)?
        {
            Some(Json(v)) => read(v).map(Some),
            None => Ok(None),
        }
    }
}
