//! S3 form-URL key decoding (`shared::event::decode_key`): never panics on any input, and
//! decoding what `encode_key` wrote gives back the key exactly (spaces, `+`, `%`, unicode, `/`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::event::{decode_key, encode_key};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    // As a raw event key: decoded or refused, never a panic.
    let _ = decode_key(s);
    // As a real key: the round trip is exact.
    let encoded = encode_key(s);
    assert!(encoded.is_ascii(), "encoded key {encoded:?} is not ASCII");
    assert_eq!(
        decode_key(&encoded).ok().as_deref(),
        Some(s),
        "round trip of {s:?} via {encoded:?}"
    );
});
