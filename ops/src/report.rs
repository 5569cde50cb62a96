//! Diagnostics for machines: a JSON array for scripts, and SARIF 2.1.0 for
//! CI's code-scanning dashboards. Positions come from the caller (1-based
//! lines and columns, in characters), who holds the texts.

use cvl_analysis::{Code, Diagnostic, Severity, Span};
use serde_json::{json, Value};

/// The 1-based (line, column, end line, end column) of a span.
pub type Position<'a> = &'a dyn Fn(&Span) -> (usize, usize, usize, usize);

fn location_json(position: Position, span: &Span) -> serde_json::Map<String, Value> {
    let (line, column, end_line, end_column) = position(span);
    let mut map = serde_json::Map::new();
    map.insert("file".into(), json!(span.file));
    map.insert("line".into(), json!(line));
    map.insert("column".into(), json!(column));
    map.insert("end_line".into(), json!(end_line));
    map.insert("end_column".into(), json!(end_column));
    map
}

/// A JSON array of objects: code, severity, message, file, line, column,
/// end_line, end_column, labels and notes.
pub fn json(diagnostics: &[Diagnostic], position: Position) -> Value {
    let items: Vec<Value> = diagnostics
        .iter()
        .map(|d| {
            let mut map = serde_json::Map::new();
            map.insert("code".into(), json!(d.code.as_str()));
            map.insert("severity".into(), json!(d.severity.as_str()));
            map.insert("message".into(), json!(d.message));
            map.extend(location_json(position, &d.span));
            let labels: Vec<Value> = d
                .labels
                .iter()
                .map(|l| {
                    let mut m = location_json(position, &l.span);
                    m.insert("message".into(), json!(l.message));
                    Value::Object(m)
                })
                .collect();
            map.insert("labels".into(), Value::Array(labels));
            map.insert("notes".into(), json!(d.notes));
            Value::Object(map)
        })
        .collect();
    Value::Array(items)
}

fn sarif_location(position: Position, span: &Span, message: Option<&str>) -> Value {
    let (line, column, end_line, end_column) = position(span);
    let mut location = json!({
        "physicalLocation": {
            "artifactLocation": { "uri": span.file },
            "region": {
                "startLine": line,
                "startColumn": column,
                "endLine": end_line,
                "endColumn": end_column,
            }
        }
    });
    if let Some(message) = message {
        location["message"] = json!({ "text": message });
    }
    location
}

/// A SARIF 2.1.0 log with one run, every code a rule.
pub fn sarif(diagnostics: &[Diagnostic], position: Position) -> Value {
    let rules: Vec<Value> = Code::ALL
        .iter()
        .map(|c| json!({ "id": c.as_str(), "shortDescription": { "text": c.summary() } }))
        .collect();
    let results: Vec<Value> = diagnostics
        .iter()
        .map(|d| {
            let level = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Hint => "note",
            };
            let mut text = d.message.clone();
            for note in &d.notes {
                text.push('\n');
                text.push_str(note);
            }
            json!({
                "ruleId": d.code.as_str(),
                "level": level,
                "message": { "text": text },
                "locations": [sarif_location(position, &d.span, None)],
                "relatedLocations": d.labels.iter()
                    .map(|l| sarif_location(position, &l.span, Some(&l.message)))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "cvl",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }]
    })
}
