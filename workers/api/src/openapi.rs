//! The OpenAPI 3.1 document served at `/v1/openapi.json`.

use serde_json::{Value, json};

/// The document.
pub fn document() -> Value {
    let error = json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}});
    let webhook = json!({"type": ["object", "null"], "description": "The completion callback's delivery (Standard Webhooks; retried with backoff over hours), once the batch completed with a `callback_url`", "properties": {
        "status": {"enum": ["pending", "delivered", "failed"]}, "attempts": {"type": "integer"},
        "last_attempt_at": {"type": ["string", "null"], "format": "date-time"}, "last_status": {"type": ["integer", "null"], "description": "The receiver's HTTP status"},
        "last_error": {"type": ["string", "null"]}, "next_attempt_at": {"type": ["string", "null"], "format": "date-time"}}});
    let batch = json!({"type": "object", "properties": {
                    "batch_id": {"type": "string"}, "status": {"enum": ["pending", "processing", "complete"], "description": "`complete` once every file is done, failed or expired"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "expires_at": {"type": "string", "format": "date-time", "description": "When the upload grants expire; a file not uploaded by then becomes `expired` within about a minute (`[expiry]` of prism-metadata)"},
                    "completed_at": {"type": ["string", "null"], "format": "date-time"},
                    "counts": {"type": "object", "properties": {"files": {"type": "integer"}, "received": {"type": "integer"}, "done": {"type": "integer"}, "failed": {"type": "integer"}, "expired": {"type": "integer", "description": "Files never uploaded before their grant expired"}}},
                    "webhook": webhook,
                    "files": {"type": "array", "items": {"type": "object", "properties": {
                        "file_id": {"type": "string"}, "name": {"type": "string"},
                        "status": {"enum": ["awaiting_upload", "received", "done", "failed", "expired"]},
                        "error": {"type": ["object", "null"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
                        "source": {"type": ["object", "null"]},
                        "variants": {"type": "array", "items": {"type": "object", "properties": {"width": {"type": "integer"}, "height": {"type": "integer"}, "format": {"enum": ["webp", "avif"]}, "bytes": {"type": "integer"}, "url": {"type": "string"}}}},
                        "placeholder": {"type": ["string", "null"]}, "dominant_color": {"type": ["string", "null"]},
                        "request_count": {"type": "integer"}}}}}});
    let err = |d: &str| json!({"description": d, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "prism", "version": env!("CARGO_PKG_VERSION"), "description": "Presigned image uploads rendered to WebP and AVIF variants. The bearer token is checked before a request body is read (401 without reading it). Limits (defaults, configurable): request head within 10 s (`[http] header_read_timeout_secs`, else the connection is closed), at most 30 s of silence inside a body (`body_timeout_secs`, else 408), an answer within 90 s (`request_timeout_secs`, else 408), 1024 requests in progress (`max_concurrent_requests`, else 503 with Retry-After); bodies: `POST /v1/batches` 1 MiB (`[limits] max_batch_body_bytes`), `POST /v1/events` 64 KiB (`max_event_bytes`), 413 past them."},
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": error,
                "CreateBatch": {"type": "object", "required": ["files", "variants"], "additionalProperties": false, "properties": {
                    "files": {"type": "array", "minItems": 1, "maxItems": 500, "items": {"type": "object", "required": ["name", "content_type", "size"], "additionalProperties": false, "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 255},
                        "content_type": {"type": "string", "pattern": "^image/"},
                        "size": {"type": "integer", "minimum": 1}}}},
                    "variants": {"type": "object", "required": ["widths", "formats"], "additionalProperties": false, "properties": {
                        "widths": {"type": "array", "minItems": 1, "maxItems": 8, "items": {"type": "integer", "minimum": 16, "maximum": 8192}},
                        "formats": {"type": "array", "minItems": 1, "items": {"enum": ["webp", "avif"]}},
                        "keep_original": {"type": "boolean"},
                        "fit": {"enum": ["inside"]},
                        "webp_quality": {"type": "integer", "minimum": 1, "maximum": 100},
                        "avif_quality": {"type": "integer", "minimum": 1, "maximum": 100}}},
                    "callback_url": {"type": "string", "format": "uri"}}},
                "Upload": {"type": "object", "properties": {
                    "file_id": {"type": "string"}, "name": {"type": "string"}, "method": {"enum": ["POST", "PUT"]}, "url": {"type": "string"},
                    "fields": {"type": ["object", "null"], "additionalProperties": {"type": "string"}, "description": "POST: form fields to send before the `file` field"},
                    "headers": {"type": ["object", "null"], "additionalProperties": {"type": "string"}, "description": "PUT: headers to send"}}},
                "Batch": batch
            }
        },
        "paths": {
            "/v1/batches": {"post": {"summary": "Create a batch and get one presigned upload per file", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateBatch"}}}},
                "responses": {"201": {"description": "Created", "content": {"application/json": {"schema": {"type": "object", "properties": {"batch_id": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"}, "uploads": {"type": "array", "items": {"$ref": "#/components/schemas/Upload"}}}}}}},
                    "400": err("Invalid request"), "401": err("No valid token (the body is not read)"), "408": err("The body stalled or the request outlasted the request timeout"), "413": err("Body over `[limits] max_batch_body_bytes` (1 MiB)"), "429": err("`rate_limited`, or `upload_quota_exceeded`: the principal's files awaiting upload plus this batch's would pass `[auth] max_inflight_uploads` (5000); a file stops counting once uploaded, failed or expired (see Retry-After)"), "503": err("Too many requests in progress, or a backend is unavailable (see Retry-After)")}}},
            "/v1/batches/{batch_id}": {"get": {"summary": "Read a batch; `wait` long-polls until it completes", "description": "A long-poll is woken by the batch's change counter, read once per `[limits] wait_check_interval_ms` (250 ms) per batch however many requests wait on it; it answers within that interval of the completion.", "parameters": [
                    {"name": "batch_id", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "wait", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 60}}],
                "responses": {"200": {"description": "The batch", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Batch"}}}}, "401": err("No valid token"), "404": err("No such batch (or not yours)"), "408": err("Outlasted the request timeout (90 s, above the longest wait)"), "429": err("`too_many_waiters`: more concurrent `wait` polls of this principal than `[limits] max_waiters_per_principal` (64); see Retry-After"), "503": err("Too many requests in progress (see Retry-After)")}}},
            "/v1/events": {"post": {"summary": "Publish a client event (e.g. IMAGE_REQUESTED)", "description": "The server adds `principal` and `received_at` (a client may not set them). A client `event_id` is kept as the idempotency key (one count per id per image); without one the server assigns one. IMAGE_REQUESTED must name an `image_id` (a file id) of the caller's own batches. Limits: nesting 4 levels, 64 keys per object, keys 128 bytes, strings 1024 bytes, arrays 64 entries; `event_id`/`image_id` 1-128 of letters, digits and -_.:", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["event_name"], "properties": {"event_name": {"type": "string", "maxLength": 128}, "event_id": {"type": "string", "maxLength": 128, "pattern": "^[A-Za-z0-9._:-]+$"}, "image_id": {"type": "string", "maxLength": 128}, "timestamp": {"type": "string", "description": "Kept as data; counts and TTLs use the server's receive time"}}}}}},
                "responses": {"202": {"description": "Accepted", "content": {"application/json": {"schema": {"type": "object", "properties": {"event_id": {"type": "string"}}}}}}, "400": err("Not a JSON object with a string event_name, a field over its limit, or a reserved field"), "404": err("IMAGE_REQUESTED for an image that is not the caller's (or does not exist); nothing is published"), "401": err("No valid token (the body is not read)"), "408": err("The body stalled or the request outlasted the request timeout"), "413": err("Body over `[limits] max_event_bytes` (64 KiB)"), "503": err("Too many requests in progress (see Retry-After)")}}},
            "/healthz": {"get": {"security": [], "responses": {"200": {"description": "Healthy"}}}},
            "/metrics": {"get": {"security": [], "responses": {"200": {"description": "Prometheus metrics"}}}}
        }
    })
}
