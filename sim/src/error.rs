//! HubSpot's error JSON: `{"status":"error","message","correlationId","category",...}`.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// An error answered in HubSpot's shape.
#[derive(Debug, Clone)]
pub struct HsError {
    pub status: StatusCode,
    pub body: Map<String, Value>,
    pub headers: Vec<(HeaderName, String)>,
}

/// A random id in the format of HubSpot's `correlationId` (a UUID).
pub fn correlation_id() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

impl HsError {
    pub fn new(status: StatusCode, category: &str, message: impl Into<String>) -> Self {
        let mut body = Map::new();
        body.insert("status".into(), json!("error"));
        body.insert("message".into(), json!(message.into()));
        body.insert("correlationId".into(), json!(correlation_id()));
        body.insert("category".into(), json!(category));
        HsError { status, body, headers: Vec::new() }
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.body.insert(key.into(), value);
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((HeaderName::from_static(name), value.into()));
        self
    }

    /// 400 VALIDATION_ERROR with a message.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    /// 400 for property values HubSpot refuses, in its "Property values were not valid" form.
    pub fn invalid_property(name: &str, error: &str, message: &str) -> Self {
        let detail = json!([{
            "isValid": false, "message": message, "error": error, "name": name,
            "localizedErrorMessage": message,
        }]);
        Self::validation(format!("Property values were not valid: {detail}"))
            .with("errors", json!([{ "message": message, "code": error, "context": { "propertyName": [name] } }]))
    }

    /// 404 for a record that does not exist (or no longer does).
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "resource not found")
    }

    /// 405 for a method a served path does not take: HubSpot's error JSON, never an empty body.
    /// The status is HTTP's; the category and wording are a guess (see the README).
    pub fn method_not_allowed(method: &axum::http::Method, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "VALIDATION_ERROR",
            format!("HTTP method {method} is not supported for {path}"),
        )
    }

    /// 409 for an email (or unique value) another contact holds. The text is HubSpot's.
    pub fn contact_exists(existing: u64) -> Self {
        Self::new(StatusCode::CONFLICT, "CONFLICT", format!("Contact already exists. Existing ID: {existing}"))
    }

    /// 400 for a request body that is not the JSON the endpoint takes.
    pub fn bad_json(detail: impl std::fmt::Display) -> Self {
        Self::validation(format!("Invalid input JSON on line 1: {detail}"))
    }

    /// The JSON body, for batch `errors` entries.
    pub fn into_batch_error(self, ids: &[String]) -> Value {
        json!({
            "status": "error",
            "category": self.body.get("category").cloned().unwrap_or(Value::Null),
            "message": self.body.get("message").cloned().unwrap_or(Value::Null),
            "context": { "ids": ids },
            "links": {},
            "errors": [],
        })
    }
}

impl IntoResponse for HsError {
    fn into_response(self) -> Response {
        let mut res = (self.status, axum::Json(Value::Object(self.body))).into_response();
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                res.headers_mut().insert(name, v);
            }
        }
        res
    }
}

pub type HsResult<T> = Result<T, HsError>;
