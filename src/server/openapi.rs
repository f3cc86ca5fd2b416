//! The API's OpenAPI 3.1 description: served at `GET /api/openapi.json`, printed by
//! `hookflow openapi`, kept in docs/openapi.json.
//!
//! The binary serves the committed copy ([`DOCUMENT`]); [`document`] generates it, and a unit
//! test fails when the two differ (`hookflow`'s tests print the fresh one to paste). So the
//! generator and the schemas of ~50 types are not in the release binary (fat LTO drops them):
//! they cost 0.5 MB there for a text that changes only with the code.
//!
//! Each route is one row of [`ROUTES`]: its method and path, and the handler's own request and
//! response types, whose JSON Schemas schemars generates from the same serde definitions that
//! shape the wire (OpenAPI 3.1 schemas are JSON Schema 2020-12). So a field added to a
//! response type is in the description at once; a route added to the router needs its row (the
//! test of the router's routes against this table says which are missing).

use schemars::generate::{Contract, SchemaSettings};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::ErrorBody;
use super::alerts::Alerts;
use super::api::{
    BulkExited, BulkReplay, BulkReplayed, ExitRequest, ListQuery, ReplayBody, Replayed, RunExited, RunPage,
};
use super::api::{FlowList, RecentRequests, RunClicks};
use super::api::{Instances, StoreHealth};
use super::destinations::{Circuits, Destinations};
use super::overview::{FlowDetail, Requests, RequestsQuery, Stats};
use super::segments::{AddMember, MemberPage, PageQuery, SegmentList};
use super::suppressions::{AddBody, Added, ImportQuery, LiftQuery, LiftedAnswer, SuppressionPage};
use crate::run::Run;
use crate::segment::{ContactView, SegmentChange};
use crate::store::suppress::ImportReport;

/// What the API reads as an email address: the common form (`local@domain.tld`, labels of
/// letters, digits and `-`; within the lengths RFC 5321 allows), which every address the
/// API hands out has. The server's parser
/// takes more (quoted local parts, say); a client sticking to this is never refused.
pub const EMAIL: &str = r"^[A-Za-z0-9_%+-]{1,20}(\.[A-Za-z0-9_%+-]{1,20}){0,2}@([A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?\.){1,3}[A-Za-z]{2,10}$";

/// A list a suppression applies to: a segment's name; `*` or empty for every email.
pub const LIST_OR_EVERY: &str = r"^([A-Za-z0-9._-]{1,100}|\*)?$";

/// The CSV an import takes, as described: a header row naming the `email` column, then a row
/// per address (a row the server cannot use is reported, not refused). The server also reads
/// other columns (`list`, `reason`, `note`) and other names for the address column.
const IMPORT_CSV: &str = r"^[Ee][Mm][Aa][Ii][Ll][ \t]*(\r?\n[\s\S]*)?$";

/// The schema of a path parameter, by its name.
fn path_param(name: &str) -> Value {
    match name {
        "name" => json!({"type": "string", "pattern": crate::flow::schema::SEGMENT_NAME}),
        "email" => json!({"type": "string", "pattern": EMAIL, "examples": ["ada@example.com"]}),
        _ => json!({"type": "string", "minLength": 1}),
    }
}

/// A schema of a type, made by a generator (a `$ref` into `components/schemas`).
type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// A type's own schema, not a reference (a query's fields become parameters).
fn inline<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    T::json_schema(g)
}

/// One route of the API.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    summary: &'static str,
    /// A struct whose fields are the query's parameters.
    query: Option<SchemaFn>,
    /// The body, and whether it may be left out (sent without a `Content-Type`).
    body: Option<(Body, bool)>,
    /// The success status, what it means, and the JSON it carries (or another content type).
    ok: (u16, &'static str, Body),
    /// Other success statuses with the same body (`201` where something was created, `200`
    /// where it already was).
    ok_also: &'static [u16],
    /// Failures besides the access rule's 401 and 403, with what each means.
    errors: &'static [(u16, &'static str)],
    /// Public: not behind the access rule.
    public: bool,
    /// Where the success's body names what another route takes (OpenAPI links: a client, or a
    /// fuzzer, can follow them): (link name, operation id, parameter, runtime expression).
    links: &'static [(&'static str, &'static str, &'static str, &'static str)],
}

/// A route with no query or body, the access rule's failures only, and no links.
const fn route(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    ok: (u16, &'static str, Body),
) -> Route {
    Route {
        method,
        path,
        summary,
        query: None,
        body: None,
        ok,
        ok_also: &[],
        errors: &[],
        public: false,
        links: &[],
    }
}

const fn get(path: &'static str, summary: &'static str, ok: (u16, &'static str, Body)) -> Route {
    route("get", path, summary, ok)
}

const fn post(path: &'static str, summary: &'static str, ok: (u16, &'static str, Body)) -> Route {
    route("post", path, summary, ok)
}

const fn delete(path: &'static str, summary: &'static str, ok: (u16, &'static str, Body)) -> Route {
    route("delete", path, summary, ok)
}

/// What a body is: JSON of a type, another content type, or either (by a query parameter).
#[derive(Clone, Copy)]
enum Body {
    Json(SchemaFn),
    Other(&'static str),
    JsonOr(SchemaFn, &'static str),
    /// An import's CSV ([`IMPORT_CSV`]).
    ImportCsv,
    /// Prometheus metrics: OpenMetrics, or the classic text format when `Accept` asks for it.
    Metrics,
}

impl Body {
    fn content(self, g: &mut SchemaGenerator) -> Value {
        match self {
            Body::Json(schema) => json!({"application/json": {"schema": schema(g).to_value()}}),
            Body::ImportCsv => json!({"text/csv": {"schema": {"type": "string", "pattern": IMPORT_CSV}}}),
            Body::Metrics => json!({
                "application/openmetrics-text": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}}
            }),
            Body::Other(ct) => json!({ ct: {"schema": {"type": "string"}} }),
            Body::JsonOr(schema, ct) => json!({
                "application/json": {"schema": schema(g).to_value()},
                ct: {"schema": {"type": "string"}}
            }),
        }
    }
}

const NOT_FOUND: (u16, &str) = (404, "No such run");
const BAD_NAME: (u16, &str) = (400, "Not a segment name, or not an email address");
const BAD_QUERY: (u16, &str) = (400, "A query parameter is not what the route takes");
const NOT_JSON: (u16, &str) = (400, "The body is not JSON");
const NOT_JSON_TYPE: (u16, &str) = (415, "The body is not sent as `application/json`");
const NOT_THE_TYPE: (u16, &str) = (422, "The body is not a JSON object of the route's fields");

/// Every route the description covers.
pub const ROUTES: &[Route] = &[
    Route {
        query: Some(inline::<ListQuery>),
        errors: &[BAD_QUERY],
        links: &[
            (
                "GetFirstRun",
                "get_api_runs_id",
                "id",
                "$response.body#/runs/0/id",
            ),
            (
                "ReplayFirstRun",
                "post_api_runs_id_replay",
                "id",
                "$response.body#/runs/0/id",
            ),
            (
                "ExitFirstRun",
                "post_api_runs_id_exit",
                "id",
                "$response.body#/runs/0/id",
            ),
            (
                "ExitFirstRunsFlow",
                "post_api_flows_flow_exit",
                "flow",
                "$response.body#/runs/0/flow",
            ),
            (
                "ReplayFirstRunsFlow",
                "post_api_flows_flow_replay_failed",
                "flow",
                "$response.body#/runs/0/flow",
            ),
        ],
        ..get(
            "/api/runs",
            "Runs, newest first, a page at a time (filter by flow, status, time, text)",
            (200, "A page of runs", Body::Json(of::<RunPage>)),
        )
    },
    Route {
        errors: &[NOT_FOUND],
        ..get(
            "/api/runs/{id}",
            "One run: its request, vars, each step's attempts with what was sent and answered",
            (200, "The run", Body::Json(of::<Run>)),
        )
    },
    Route {
        body: Some((Body::Json(of::<ReplayBody>), true)),
        errors: &[
            NOT_JSON,
            NOT_JSON_TYPE,
            NOT_THE_TYPE,
            NOT_FOUND,
            (
                409,
                "The run is not finished, or its flow (version) cannot run it",
            ),
        ],
        links: &[("GetNewRun", "get_api_runs_id", "id", "$response.body#/run_id")],
        ..post(
            "/api/runs/{id}/replay",
            "A new run from a finished run's request (from the start, the failed step or a named action)",
            (202, "The new run, queued", Body::Json(of::<Replayed>)),
        )
    },
    Route {
        body: Some((Body::Json(of::<ExitRequest>), true)),
        errors: &[
            NOT_JSON,
            NOT_JSON_TYPE,
            NOT_THE_TYPE,
            NOT_FOUND,
            (409, "The run is already finished"),
        ],
        ..post(
            "/api/runs/{id}/exit",
            "End an unfinished run as exited",
            (200, "The run exited", Body::Json(of::<RunExited>)),
        )
    },
    Route {
        body: Some((Body::Json(of::<ExitRequest>), false)),
        errors: &[NOT_JSON, NOT_JSON_TYPE, NOT_THE_TYPE],
        ..post(
            "/api/flows/{flow}/exit",
            "End every waiting run of a flow (or only count them)",
            (200, "How many matched and exited", Body::Json(of::<BulkExited>)),
        )
    },
    Route {
        body: Some((Body::Json(of::<BulkReplay>), false)),
        errors: &[NOT_JSON, NOT_JSON_TYPE, NOT_THE_TYPE],
        ..post(
            "/api/flows/{flow}/replay-failed",
            "Replay every failed run of a flow created in a time range (or only count them)",
            (
                200,
                "How many matched, and each replay",
                Body::Json(of::<BulkReplayed>),
            ),
        )
    },
    get(
        "/api/runs/{id}/clicks",
        "The clicks on the tracked links of a run's emails, oldest first, each with how it was judged",
        (
            200,
            "The clicks (none for an unknown run)",
            Body::Json(of::<RunClicks>),
        ),
    ),
    Route {
        links: &[
            (
                "GetFirstFlow",
                "get_api_flows_flow",
                "flow",
                "$response.body#/flows/0/name",
            ),
            (
                "GetFirstFlowsRequests",
                "get_api_flows_flow_requests",
                "flow",
                "$response.body#/flows/0/name",
            ),
        ],
        ..get(
            "/api/flows",
            "Every flow: trigger, URL path, counters, warnings, whether a broken file left it on its last good version; and the last reload",
            (200, "The flows", Body::Json(of::<FlowList>)),
        )
    },
    Route {
        errors: &[(404, "No such flow")],
        ..get(
            "/api/flows/{flow}",
            "One flow in full: its file as written and as JSON, trigger, counters, link clicks, recent refusals",
            (200, "The flow", Body::Json(of::<FlowDetail>)),
        )
    },
    Route {
        query: Some(inline::<super::api::LimitQuery>),
        errors: &[BAD_QUERY],
        ..get(
            "/api/flows/{flow}/requests",
            "A flow's last requests, newest first, with outcome, status and reason",
            (200, "The requests", Body::Json(of::<RecentRequests>)),
        )
    },
    Route {
        query: Some(inline::<RequestsQuery>),
        errors: &[BAD_QUERY],
        ..get(
            "/api/requests",
            "The newest requests of every flow (or one), requests to no known flow under `(unknown)`",
            (200, "The requests", Body::Json(of::<Requests>)),
        )
    },
    get(
        "/api/stats",
        "Per flow, the last hour per minute and the last day per hour; the queue, waiting runs, open circuits",
        (200, "The figures", Body::Json(of::<Stats>)),
    ),
    get(
        "/api/segments",
        "Every segment with its member count",
        (200, "The segments", Body::Json(of::<SegmentList>)),
    ),
    Route {
        query: Some(inline::<PageQuery>),
        errors: &[BAD_NAME],
        links: &[(
            "GetFirstContact",
            "get_api_contacts_email",
            "email",
            "$response.body#/members/0/email",
        )],
        ..get(
            "/api/segments/{name}/members",
            "A segment's members in address order, a page at a time (or those whose address contains `q`)",
            (200, "A page of members", Body::Json(of::<MemberPage>)),
        )
    },
    Route {
        body: Some((Body::Json(of::<AddMember>), false)),
        errors: &[BAD_NAME, NOT_JSON_TYPE, NOT_THE_TYPE],
        ..post(
            "/api/segments/{name}/members",
            "Add a contact to a segment (raises `segment.added` as a `segment` action does)",
            (200, "What changed", Body::Json(of::<SegmentChange>)),
        )
    },
    Route {
        errors: &[BAD_NAME],
        ..delete(
            "/api/segments/{name}/members/{email}",
            "Remove a contact from a segment (raises `segment.removed`)",
            (200, "What changed", Body::Json(of::<SegmentChange>)),
        )
    },
    Route {
        errors: &[BAD_NAME],
        ..get(
            "/api/segments/{name}/export",
            "A segment's members as CSV: address, dates, one column per attribute",
            (200, "CSV", Body::Other("text/csv")),
        )
    },
    Route {
        errors: &[BAD_NAME, (404, "No such contact")],
        ..get(
            "/api/contacts/{email}",
            "A contact: its attributes and segments",
            (200, "The contact", Body::Json(of::<ContactView>)),
        )
    },
    Route {
        query: Some(inline::<super::suppressions::ListQuery>),
        errors: &[BAD_QUERY],
        ..get(
            "/api/suppressions",
            "The suppression list in address order, a page at a time, or all of it as CSV (`format=csv`)",
            (
                200,
                "A page of entries, or the CSV",
                Body::JsonOr(of::<SuppressionPage>, "text/csv"),
            ),
        )
    },
    Route {
        body: Some((Body::Json(of::<AddBody>), false)),
        ok_also: &[200],
        errors: &[
            (400, "Not an email address or list name, or not JSON"),
            NOT_JSON_TYPE,
            NOT_THE_TYPE,
        ],
        links: &[(
            "LiftIt",
            "delete_api_suppressions_email",
            "email",
            "$response.body#/suppression/email",
        )],
        ..post(
            "/api/suppressions",
            "Suppress an address, for every email or one list",
            (201, "Suppressed now", Body::Json(of::<Added>)),
        )
    },
    Route {
        query: Some(inline::<ImportQuery>),
        body: Some((Body::ImportCsv, false)),
        errors: &[
            (400, "Not UTF-8, or not a CSV with an `email` column"),
            (413, "Larger than 10 MiB: split the file"),
        ],
        ..post(
            "/api/suppressions/import",
            "Import another tool's opt-outs from CSV (an `email` column; `list`, `reason` optional)",
            (200, "What the import did", Body::Json(of::<ImportReport>)),
        )
    },
    Route {
        query: Some(inline::<LiftQuery>),
        errors: &[
            (400, "Not an email address, or no reason given"),
            (404, "The address is not suppressed for that list"),
        ],
        ..delete(
            "/api/suppressions/{email}",
            "Lift a suppression (kept as history, with the reason given)",
            (200, "Lifted", Body::Json(of::<LiftedAnswer>)),
        )
    },
    get(
        "/api/alerts",
        "Alerts raised now, and the last ones resolved",
        (200, "The alerts", Body::Json(of::<Alerts>)),
    ),
    get(
        "/api/breakers",
        "The circuits of destinations that failed (closed and quiet ones are left out)",
        (200, "The circuits", Body::Json(of::<Circuits>)),
    ),
    get(
        "/api/destinations",
        "Each destination: attempts in flight against its limit, work sent back while full, its circuit",
        (200, "The destinations", Body::Json(of::<Destinations>)),
    ),
    get(
        "/api/store",
        "What the store could not read when it opened (set aside, and where its bytes went)",
        (200, "The store's health", Body::Json(of::<StoreHealth>)),
    ),
    get(
        "/api/instances",
        "The instances sharing this store, and the flow versions each serves",
        (200, "The live instances", Body::Json(of::<Instances>)),
    ),
    Route {
        errors: &[(503, "The backup could not be taken (the store says why)")],
        ..post(
            "/api/backup",
            "A consistent backup of the store, taken now while it serves (what it holds is in the `x-hookflow-backup` header)",
            (
                200,
                "The backup, gzip-compressed",
                Body::Other("application/gzip"),
            ),
        )
    },
    get(
        "/metrics",
        "Prometheus metrics: OpenMetrics, or text 0.0.4 when `Accept` asks for it",
        (200, "The metrics", Body::Metrics),
    ),
    Route {
        errors: &[(503, "The store does not answer (with why)")],
        public: true,
        ..get(
            "/readyz",
            "The store answers",
            (200, "`ready`", Body::Other("text/plain")),
        )
    },
    Route {
        public: true,
        ..get(
            "/api/openapi.json",
            "This description",
            (200, "OpenAPI 3.1", Body::Other("application/json")),
        )
    },
    Route {
        public: true,
        ..get(
            "/healthz",
            "The process answers",
            (200, "`ok`", Body::Other("text/plain")),
        )
    },
];

/// The description as committed (docs/openapi.json), which the server serves.
pub const DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// The description, generated from the route table and the types.
pub fn document() -> Value {
    let mut responses = generator(Contract::Serialize);
    let mut requests = generator(Contract::Deserialize);
    let mut paths = Map::new();
    for r in ROUTES {
        let op = operation(r, &mut requests, &mut responses);
        let entry = paths.entry(r.path).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    let mut schemas = requests.take_definitions(true);
    schemas.extend(responses.take_definitions(true));
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "hookflow",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The API of a hookflow server: its runs, flows, segments and what it watches. With `serve --api-token`, every route but the public ones takes `Authorization: Bearer <token>`; without one, only clients on the server's own machine are served."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        }
    })
}

fn generator(contract: Contract) -> SchemaGenerator {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    settings.contract = contract;
    settings.into_generator()
}

fn operation(r: &Route, requests: &mut SchemaGenerator, responses: &mut SchemaGenerator) -> Value {
    let mut parameters: Vec<Value> = path_params(r.path)
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": path_param(name)}))
        .collect();
    if let Some(query) = r.query {
        let q = query(requests).to_value();
        let required: Vec<&str> = q["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for (name, schema) in q["properties"].as_object().into_iter().flatten() {
            let mut schema = schema.clone();
            let description = schema.as_object_mut().and_then(|o| o.remove("description"));
            let mut p = json!({"name": name, "in": "query", "required": required.contains(&name.as_str()), "schema": schema});
            if let Some(d) = description {
                p["description"] = d;
            }
            parameters.push(p);
        }
    }
    let mut op = json!({
        "summary": r.summary,
        "operationId": operation_id(r),
        "responses": responses_of(r, responses),
    });
    if !parameters.is_empty() {
        op["parameters"] = parameters.into();
    }
    if let Some((body, optional)) = r.body {
        op["requestBody"] = json!({"required": !optional, "content": body.content(requests)});
    }
    if !r.public {
        op["security"] = json!([{"bearer": []}]);
    }
    op
}

fn responses_of(r: &Route, g: &mut SchemaGenerator) -> Value {
    let (status, what, body) = r.ok;
    let content = body.content(g);
    let mut out = json!({ status.to_string(): {"description": what, "content": content} });
    for also in r.ok_also {
        out[also.to_string()] = out[status.to_string()].clone();
    }
    for (name, operation, parameter, expression) in r.links {
        out[status.to_string()]["links"][*name] =
            json!({"operationId": operation, "parameters": {*parameter: expression}});
    }
    let error = of::<ErrorBody>(g).to_value();
    let mut failures: Vec<(u16, &str)> = r.errors.to_vec();
    if !r.public {
        failures.push((401, "No token, or the wrong one (`serve --api-token`)"));
        failures.push((403, "A client not allowed by the access rule"));
    }
    for (status, what) in failures {
        let entry = &mut out[status.to_string()];
        let what = match entry["description"].as_str() {
            Some(before) => format!("{before}; or: {what}"),
            None => what.to_string(),
        };
        // The API's failures are JSON; the health checks' are a line of text.
        let content = if r.public {
            json!({"text/plain": {"schema": {"type": "string"}}})
        } else {
            json!({"application/json": {"schema": error}})
        };
        *entry = json!({"description": what, "content": content});
    }
    out
}

/// `{id}` and the like in a path.
fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

/// `get_api_runs_id`: the method and the path's words.
fn operation_id(r: &Route) -> String {
    let words: Vec<String> = r
        .path
        .split(['/', '-', '.', '{', '}'])
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    format!("{}_{}", r.method, words.join("_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regenerate with `HOOKFLOW_WRITE_OPENAPI=1 cargo test --lib openapi` (it writes the file).
    #[test]
    fn the_committed_description_is_the_generated_one() {
        let fresh = serde_json::to_string_pretty(&document()).unwrap() + "\n";
        if std::env::var_os("HOOKFLOW_WRITE_OPENAPI").is_some() {
            std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"), &fresh).unwrap();
            return;
        }
        let committed: Value = serde_json::from_str(DOCUMENT).unwrap();
        assert!(
            committed == document(),
            "docs/openapi.json is not what the code describes: HOOKFLOW_WRITE_OPENAPI=1 cargo test --lib openapi"
        );
    }

    #[test]
    fn links_lead_to_operations_and_their_parameters() {
        let doc = document();
        let mut operations = std::collections::BTreeMap::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (_, op) in ops.as_object().unwrap() {
                operations.insert(op["operationId"].as_str().unwrap().to_string(), path.clone());
            }
        }
        assert_eq!(operations.len(), ROUTES.len(), "operation ids are unique");
        for r in ROUTES {
            for (name, operation, parameter, _) in r.links {
                let path = operations
                    .get(*operation)
                    .unwrap_or_else(|| panic!("{name}: no {operation}"));
                assert!(
                    path.contains(&format!("{{{parameter}}}")),
                    "{name}: {path} has no {parameter}"
                );
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').unwrap()];
            assert!(doc["components"]["schemas"].get(name).is_some(), "{name}");
        }
    }
}

#[cfg(test)]
mod coverage {
    /// Every route of the API the router serves (read from its source) has its row, and every
    /// row is a route: a route added without its description fails here.
    #[test]
    fn the_description_covers_every_api_route_of_the_router() {
        let source = include_str!("mod.rs");
        let mut served = std::collections::BTreeSet::new();
        for part in source.split(".route(").skip(1) {
            let Some(path) = part
                .trim_start()
                .strip_prefix('"')
                .and_then(|p| p.split('"').next())
            else {
                continue;
            };
            if !(path.starts_with("/api") || ["/metrics", "/healthz", "/readyz"].contains(&path)) {
                continue;
            }
            let handlers = &part[..part.find("\n        .").unwrap_or(part.len())];
            for method in ["get", "post", "put", "patch", "delete"] {
                if handlers.contains(&format!("{method}(")) {
                    served.insert((method.to_string(), path.to_string()));
                }
            }
        }
        let described: std::collections::BTreeSet<(String, String)> = super::ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        assert!(served.len() >= 30, "{served:?}");
        assert_eq!(served, described);
    }
}
