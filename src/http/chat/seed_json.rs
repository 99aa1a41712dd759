//! The JSON the original frontend reads from tool-status (type 5) and reference
//! (type 6) events: the `message` of such an event is this JSON, as a string.

use serde_json::{Value, json};

use crate::conversation::{SourceReferences, ToolActivity, ToolStatus};

/// The `url` of a passage whose document has none.
const NO_URL: &str = "#";

/// A type 5 event's list: the one tool call whose status changed. The frontend
/// knows only `Working` and `Done`; a failed call is `Done` with the error as its
/// output and a `display` saying it failed.
pub fn tool_status(activity: &ToolActivity) -> Value {
    let label = &activity.label;
    // A knowledge source is searched; an MCP server's tool (`<server>__<tool>`) is
    // called, and may do anything.
    let is_mcp_tool = activity.name.contains(crate::agent::mcp::names::SEPARATOR);
    let (status, display) = match (activity.status, is_mcp_tool) {
        (ToolStatus::Working, false) => ("Working", format!("Searching {label}…\n")),
        (ToolStatus::Done, false) => ("Done", format!("Searched {label}\n")),
        (ToolStatus::Error, false) => ("Done", format!("Searching {label} failed\n")),
        (ToolStatus::Working, true) => ("Working", format!("Calling {label}…\n")),
        (ToolStatus::Done, true) => ("Done", format!("Called {label}\n")),
        (ToolStatus::Error, true) => ("Done", format!("Calling {label} failed\n")),
    };
    let mut entry = json!({
        "id": activity.call_id,
        "status": status,
        "display": display,
        "name": label,
        "func_name": activity.name,
    });
    match &activity.output {
        None => entry["arguments"] = activity.arguments.clone(),
        Some(output) => entry["func_output"] = Value::String(output.clone()),
    }
    json!([entry])
}

/// A type 6 event's list: the passages found, per source. Each passage also comes
/// as the one sentence of `match_sentences`, under its own id, which is what the
/// frontend looks a citation `[^id]` up by. The frontend makes every passage's
/// title a link to its `url`: one without gets `#`, a link that stays on the page.
pub fn references(sources: &[SourceReferences]) -> Value {
    let sources: Vec<Value> = sources
        .iter()
        .map(|source| {
            let data: Vec<Value> = source
                .items
                .iter()
                .map(|item| {
                    json!({
                        "id": item.id,
                        "title": item.title,
                        "url": item.url.as_deref().unwrap_or(NO_URL),
                        "match_sentence": item.snippet,
                        "score": item.score,
                        "match_sentences": [{
                            "id": item.id,
                            "sentence": item.snippet,
                            "prefix_sentence": "",
                            "tail_sentence": "",
                            "db_id": item.id,
                        }],
                    })
                })
                .collect();
            json!({ "id": source.id, "name": source.name, "data": data })
        })
        .collect();
    Value::Array(sources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::Reference;

    fn activity(status: ToolStatus, output: Option<&str>) -> ToolActivity {
        ToolActivity {
            call_id: "call_1".into(),
            name: "search_handbook".into(),
            label: "Handbook".into(),
            status,
            arguments: json!({"query": "install"}),
            output: output.map(Into::into),
        }
    }

    #[test]
    fn a_working_call_shows_its_arguments() {
        let status = tool_status(&activity(ToolStatus::Working, None));
        assert_eq!(
            status,
            json!([{
                "id": "call_1",
                "status": "Working",
                "display": "Searching Handbook…\n",
                "name": "Handbook",
                "func_name": "search_handbook",
                "arguments": {"query": "install"},
            }])
        );
    }

    #[test]
    fn an_ended_call_shows_its_output_and_a_failure_is_done_too() {
        let done = tool_status(&activity(ToolStatus::Done, Some("[^a] Install")));
        assert_eq!(done[0]["status"], "Done");
        assert_eq!(done[0]["func_output"], "[^a] Install");
        assert!(done[0].get("arguments").is_none());
        let failed = tool_status(&activity(ToolStatus::Error, Some("error: timed out")));
        assert_eq!(failed[0]["status"], "Done");
        assert_eq!(failed[0]["display"], "Searching Handbook failed\n");
    }

    #[test]
    fn an_mcp_tool_is_called_rather_than_searched() {
        let mut call = activity(ToolStatus::Working, None);
        call.name = "tickets__lookup".into();
        call.label = "tickets: lookup".into();
        assert_eq!(
            tool_status(&call)[0]["display"],
            "Calling tickets: lookup…\n"
        );
        call.status = ToolStatus::Error;
        call.output = Some("read-only".into());
        assert_eq!(
            tool_status(&call)[0]["display"],
            "Calling tickets: lookup failed\n"
        );
    }

    #[test]
    fn references_list_passages_per_source() {
        let sources = [SourceReferences {
            id: "search_handbook".into(),
            name: "Handbook".into(),
            items: vec![Reference {
                id: "p1".into(),
                title: "Install".into(),
                snippet: "Run cargo".into(),
                url: None,
                score: 1.5,
            }],
        }];
        let listed = references(&sources);
        let item = &listed[0]["data"][0];
        assert_eq!(listed[0]["id"], "search_handbook");
        assert_eq!(listed[0]["name"], "Handbook");
        assert_eq!(item["id"], "p1");
        assert_eq!(item["match_sentence"], "Run cargo");
        assert_eq!(item["url"], "#");
        assert_eq!(item["score"], 1.5);
        assert_eq!(item["match_sentences"][0]["id"], "p1");
    }
}
