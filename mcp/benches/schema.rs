//! Tool-argument validation: what one model tool call costs before it is
//! sent. jsonschema is built unoptimized in release builds (it was ~50 s
//! of a fresh 2-core build; Cargo.toml's profile), so this shows what that
//! costs per call: compile once per tool, validate once per call.
//!
//! `cargo bench -p amesh-mcp --bench schema`

use amesh_mcp::schema::ToolSchema;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

/// A manifest entry's schema as providers write them (Stripe's
/// `create_customer`-like: strings, a format, a pattern, an enum, limits).
fn schema() -> serde_json::Value {
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 256},
            "email": {"type": "string", "format": "email"},
            "currency": {"type": "string", "pattern": "^[a-z]{3}$"},
            "tier": {"type": "string", "enum": ["free", "pro", "enterprise"]},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 10}
        },
        "required": ["name", "email"],
        "additionalProperties": false
    })
}

fn bench(c: &mut Criterion) {
    let schema = schema();
    c.bench_function("compile a tool's schema", |b| {
        b.iter(|| ToolSchema::compile("create_customer", "create_customer", &schema).unwrap())
    });
    let tool = ToolSchema::compile("create_customer", "create_customer", &schema).unwrap();
    let good = json!({
        "name": "Ada Lovelace", "email": "ada@example.com", "currency": "eur",
        "tier": "pro", "limit": 10, "tags": ["a", "b"]
    });
    let bad = json!({"name": "", "email": "not-an-email", "limit": 1000, "extra": true});
    c.bench_function("validate valid arguments", |b| {
        b.iter(|| tool.validate(&good).unwrap())
    });
    c.bench_function("validate invalid arguments (all violations)", |b| {
        b.iter(|| tool.validate(&bad).unwrap_err())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
