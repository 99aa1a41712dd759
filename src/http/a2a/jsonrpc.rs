//! JSON-RPC 2.0 as A2A uses it: the request envelope, checked by hand so each
//! kind of bad input gets its own code, and the response envelope.

use actix_web::HttpResponse;
use serde::Serialize;
use serde_json::{Value, json};

use crate::a2a::A2aError;

/// The standard JSON-RPC codes, and the A2A ones the routes answer themselves.
pub mod code {
    pub const PARSE_ERROR: i32 = -32700;
    pub const INVALID_REQUEST: i32 = -32600;
    pub const METHOD_NOT_FOUND: i32 = -32601;
    pub const INVALID_PARAMS: i32 = -32602;
    /// This server answers it only for "not now" (at its limit, or stopping),
    /// with HTTP 503 and `Retry-After`.
    pub const INTERNAL_ERROR: i32 = -32603;
    pub const PUSH_NOTIFICATION_NOT_SUPPORTED: i32 = -32003;
    pub const CONTENT_TYPE_NOT_SUPPORTED: i32 = -32005;
    pub const EXTENDED_CARD_NOT_CONFIGURED: i32 = -32007;
    pub const VERSION_NOT_SUPPORTED: i32 = -32009;
}

/// A JSON-RPC error: its code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcError {
    pub code: i32,
    pub message: String,
}

impl RpcError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<A2aError> for RpcError {
    fn from(error: A2aError) -> Self {
        Self::new(error.code(), error.to_string())
    }
}

/// A request that is well-formed JSON-RPC.
#[derive(Debug, PartialEq)]
pub struct RpcRequest {
    /// A string, a number or null, echoed in the answer.
    pub id: Value,
    pub method: String,
    pub params: Value,
}

/// Parses a request body. On failure, the error and the id to answer it with
/// (null when the request had none that could be read).
pub fn parse(body: &[u8]) -> Result<RpcRequest, (Value, RpcError)> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        (
            Value::Null,
            RpcError::new(code::PARSE_ERROR, format!("the body is not JSON: {error}")),
        )
    })?;
    let Value::Object(mut fields) = value else {
        return Err((
            Value::Null,
            RpcError::new(code::INVALID_REQUEST, "a request is a JSON object"),
        ));
    };
    let id = fields.remove("id").unwrap_or(Value::Null);
    let invalid = |id: &Value, problem: &str| {
        Err((id.clone(), RpcError::new(code::INVALID_REQUEST, problem)))
    };
    if !matches!(id, Value::String(_) | Value::Number(_) | Value::Null) {
        return invalid(&Value::Null, "id must be a string, a number or null");
    }
    if fields.get("jsonrpc") != Some(&json!("2.0")) {
        return invalid(&id, "jsonrpc must be \"2.0\"");
    }
    let method = match fields.remove("method") {
        Some(Value::String(method)) if !method.is_empty() => method,
        _ => return invalid(&id, "method must be a non-empty string"),
    };
    let params = fields.remove("params").unwrap_or(Value::Null);
    if !matches!(params, Value::Object(_) | Value::Null) {
        return Err((
            id,
            RpcError::new(code::INVALID_PARAMS, "params must be an object"),
        ));
    }
    Ok(RpcRequest { id, method, params })
}

/// Reads `params` as `T`, or says what is wrong with them.
pub fn params<T: serde::de::DeserializeOwned>(mut params: Value) -> Result<T, RpcError> {
    camel_case_fields(&mut params);
    serde_json::from_value(params)
        .map_err(|error| RpcError::new(code::INVALID_PARAMS, format!("invalid params: {error}")))
}

/// Renames `snake_case` field names to the `lowerCamelCase` the types read. The
/// binding's JSON is ProtoJSON, whose readers accept a field by either name
/// (`history_length` or `historyLength`). The values of free-form fields —
/// `metadata`, and a data part's `data` — are the sender's own and kept as sent.
fn camel_case_fields(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            let names: Vec<String> = fields
                .keys()
                .filter(|name| name.contains('_'))
                .cloned()
                .collect();
            for name in names {
                let camel = lower_camel_case(&name);
                if !fields.contains_key(&camel)
                    && let Some(field) = fields.remove(&name)
                {
                    fields.insert(camel, field);
                }
            }
            for (name, field) in fields.iter_mut() {
                if name != "metadata" && name != "data" {
                    camel_case_fields(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(camel_case_fields),
        _ => {}
    }
}

fn lower_camel_case(name: &str) -> String {
    let mut camel = String::with_capacity(name.len());
    let mut upper = false;
    for character in name.chars() {
        if character == '_' {
            upper = !camel.is_empty();
        } else if upper {
            camel.extend(character.to_uppercase());
            upper = false;
        } else {
            camel.push(character);
        }
    }
    camel
}

/// The JSON of a successful answer.
pub fn success(id: &Value, result: impl Serialize) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// The JSON of an error answer. An A2A error (-32001 to -32099) carries a
/// `google.rpc.ErrorInfo` naming it, as the specification requires.
pub fn failure(id: &Value, error: &RpcError) -> Value {
    let mut body = json!({ "code": error.code, "message": error.message });
    if let Some(reason) = a2a_reason(error.code) {
        body["data"] = json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason,
            "domain": "a2a-protocol.org",
        }]);
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": body })
}

/// The ErrorInfo reason of an A2A error code.
fn a2a_reason(code: i32) -> Option<&'static str> {
    Some(match code {
        -32001 => "TASK_NOT_FOUND",
        -32002 => "TASK_NOT_CANCELABLE",
        -32003 => "PUSH_NOTIFICATION_NOT_SUPPORTED",
        -32004 => "UNSUPPORTED_OPERATION",
        -32005 => "CONTENT_TYPE_NOT_SUPPORTED",
        -32006 => "INVALID_AGENT_RESPONSE",
        -32007 => "EXTENDED_AGENT_CARD_NOT_CONFIGURED",
        -32008 => "EXTENSION_SUPPORT_REQUIRED",
        -32009 => "VERSION_NOT_SUPPORTED",
        _ => return None,
    })
}

/// An error answer as an HTTP response. JSON-RPC errors travel with status 200,
/// except "not now", which is 503 so load balancers and clients retry.
pub fn error_response(id: &Value, error: &RpcError) -> HttpResponse {
    if error.code == code::INTERNAL_ERROR {
        return HttpResponse::ServiceUnavailable()
            .insert_header((actix_web::http::header::RETRY_AFTER, "1"))
            .json(failure(id, error));
    }
    HttpResponse::Ok().json(failure(id, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(body: &str) -> (Value, i32) {
        let (id, error) = parse(body.as_bytes()).unwrap_err();
        (id, error.code)
    }

    #[test]
    fn a_well_formed_request_is_read() {
        let request =
            parse(br#"{"jsonrpc":"2.0","id":7,"method":"GetTask","params":{"id":"t"}}"#).unwrap();
        assert_eq!(request.id, json!(7));
        assert_eq!(request.method, "GetTask");
        assert_eq!(request.params, json!({"id": "t"}));
    }

    #[test]
    fn each_kind_of_bad_request_has_its_code() {
        assert_eq!(error_of("{not json"), (Value::Null, code::PARSE_ERROR));
        assert_eq!(error_of("[1]"), (Value::Null, code::INVALID_REQUEST));
        assert_eq!(
            error_of(r#"{"jsonrpc":"1.0","id":"a","method":"x"}"#),
            (json!("a"), code::INVALID_REQUEST)
        );
        assert_eq!(
            error_of(r#"{"jsonrpc":"2.0","id":1,"method":""}"#),
            (json!(1), code::INVALID_REQUEST)
        );
        assert_eq!(
            error_of(r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#),
            (Value::Null, code::INVALID_REQUEST)
        );
        assert_eq!(
            error_of(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#),
            (json!(1), code::INVALID_PARAMS)
        );
    }

    #[test]
    fn snake_case_field_names_are_read_and_free_form_values_kept() {
        let request: a2a::SendMessageRequest = params(json!({
            "message": {
                "message_id": "m", "role": "ROLE_USER", "context_id": "c",
                "parts": [{"data": {"some_key": 1}, "media_type": "application/json"}],
                "metadata": {"user_key": true},
            },
            "configuration": {"history_length": 2, "return_immediately": true},
        }))
        .unwrap();
        assert_eq!(request.message.message_id, "m");
        assert_eq!(request.message.context_id.as_deref(), Some("c"));
        let configuration = request.configuration.unwrap();
        assert_eq!(configuration.history_length, Some(2));
        assert_eq!(configuration.return_immediately, Some(true));
        let part = &request.message.parts[0];
        assert_eq!(part.media_type.as_deref(), Some("application/json"));
        assert_eq!(part.content, a2a::PartContent::Data(json!({"some_key": 1})));
        let metadata = request.message.metadata.unwrap();
        assert_eq!(metadata.get("user_key"), Some(&json!(true)));
    }

    #[test]
    fn answers_echo_the_id() {
        assert_eq!(
            success(&json!("x"), json!({"ok": true})),
            json!({"jsonrpc": "2.0", "id": "x", "result": {"ok": true}})
        );
        let error = RpcError::new(-32001, "task t not found");
        let answer = failure(&json!(3), &error);
        assert_eq!(answer["error"]["code"], -32001);
        assert_eq!(answer["error"]["data"][0]["reason"], "TASK_NOT_FOUND");
        assert_eq!(answer["error"]["data"][0]["domain"], "a2a-protocol.org");
        let standard = failure(&json!(3), &RpcError::new(code::METHOD_NOT_FOUND, "no"));
        assert!(standard["error"].get("data").is_none());
    }
}
