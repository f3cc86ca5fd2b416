//! `/hooks/{flow}/{token}`: hands the request to the [intake](crate::intake), whose stages
//! admit, read, authenticate, decode, evaluate and persist it before the answer.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;

use super::AppState;
use crate::intake::Arrival;

pub async fn receive(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((flow, token)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let arrival = Arrival {
        peer,
        flow,
        token,
        method,
        uri,
        headers,
        body,
    };
    st.intake.receive(arrival).await
}
