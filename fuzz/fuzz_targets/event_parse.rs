//! The queue-message parser (`shared::event::parse_body`): raw S3 events, SNS envelopes, test
//! events and client JSON, then everything a worker derives from a record. Any input may be
//! rejected; none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::event::{EventBody, parse_body, parse_lenient_time};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_lenient_time(body);
    let Ok(parsed) = parse_body(body) else {
        return;
    };
    if let EventBody::S3(event) = parsed.body {
        for r in &event.records {
            let _ = r.check_version();
            let _ = r.is_object_created();
            let _ = r.event_time();
            let _ = r.idempotency_key();
            if let Ok(key) = r.s3.object.decoded_key() {
                let _ = shared::keys::parse_upload_key(&key);
                let _ = shared::keys::parse_media_key(&key);
            }
        }
    }
});
