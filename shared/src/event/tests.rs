use super::*;

const S3_PUT: &str = include_str!("../../tests/fixtures/events/s3-put.json");
const S3_POST_SPACES: &str = include_str!("../../tests/fixtures/events/s3-post-spaces.json");
const SNS_S3_PUT: &str = include_str!("../../tests/fixtures/events/sns-s3-put.json");
const S3_TEST: &str = include_str!("../../tests/fixtures/events/s3-test-event.json");
const MOTO_RAW_PUT: &str = include_str!("../../tests/fixtures/events/moto-raw-put.json");
const MOTO_SNS_PUT: &str = include_str!("../../tests/fixtures/events/moto-sns-put.json");
const MOTO_RAW_TEST: &str = include_str!("../../tests/fixtures/events/moto-raw-test.json");
const MOTO_SNS_TEST: &str = include_str!("../../tests/fixtures/events/moto-sns-test.json");

fn s3(body: &str) -> (Option<SnsEnvelope>, S3Event) {
    let parsed = parse_body(body).unwrap();
    match parsed.body {
        EventBody::S3(e) => (parsed.envelope, e),
        other => panic!("expected an S3 event, got {other:?}"),
    }
}

#[test]
fn real_s3_record_round_trips_every_field() {
    for fixture in [S3_PUT, S3_POST_SPACES, MOTO_RAW_PUT] {
        let original: Value = serde_json::from_str(fixture).unwrap();
        let (_, event) = s3(fixture);
        assert_eq!(serde_json::to_value(&event).unwrap(), original);
    }
}

#[test]
fn sns_envelope_round_trips_and_unwraps() {
    for fixture in [SNS_S3_PUT, MOTO_SNS_PUT] {
        let original: Value = serde_json::from_str(fixture).unwrap();
        let (envelope, event) = s3(fixture);
        let envelope = envelope.expect("an SNS envelope");
        assert_eq!(serde_json::to_value(&envelope).unwrap(), original);
        assert_eq!(envelope.kind, "Notification");
        assert_eq!(event.records.len(), 1);
    }
}

#[test]
fn raw_and_wrapped_bodies_parse_to_the_same_event() {
    let (_, raw) = s3(S3_PUT);
    let (_, wrapped) = s3(SNS_S3_PUT);
    assert_eq!(raw, wrapped);
    let (_, moto_raw) = s3(MOTO_RAW_PUT);
    let (_, moto_wrapped) = s3(MOTO_SNS_PUT);
    assert_eq!(
        moto_raw.records[0].s3.object,
        moto_wrapped.records[0].s3.object
    );
}

#[test]
fn real_s3_fields_are_all_read() {
    let (_, event) = s3(S3_PUT);
    let r = &event.records[0];
    assert!(r.is_object_created());
    r.check_version().unwrap();
    assert_eq!(r.aws_region, "eu-west-1");
    assert_eq!(
        r.user_identity.as_ref().unwrap().principal_id,
        "AWS:AIDAJDPLRKLG7UEXAMPLE"
    );
    assert_eq!(
        r.request_parameters.as_ref().unwrap().source_ip_address,
        "203.0.113.10"
    );
    assert_eq!(r.s3.object.size, Some(829_183));
    assert_eq!(r.s3.object.sequencer.as_deref(), Some("0055AED6DCD90281E5"));
    assert_eq!(
        r.s3.object.version_id.as_deref(),
        Some("096fKKXTRTtl3on89fVO.nfljtsv6qko")
    );
    assert_eq!(r.event_time().unwrap().unix_timestamp(), 1_795_464_172);
    assert_eq!(
        r.idempotency_key().unwrap(),
        "prism-uploads-1a2b3c/uploads/0193a5b2-7c1e-7d00-8000-000000000001/\
         0193a5b2-7c1e-7d00-8000-0000000000f1#096fKKXTRTtl3on89fVO.nfljtsv6qko"
    );
}

#[test]
fn moto_shape_is_accepted() {
    let (_, event) = s3(MOTO_RAW_PUT);
    let r = &event.records[0];
    // moto: no sequencer/versionId/userIdentity, key encoded with quote_plus (`/` as %2F),
    // eventTime without a zone.
    assert!(r.user_identity.is_none());
    assert!(r.s3.object.sequencer.is_none());
    assert!(
        r.event_time().is_some(),
        "lenient time parse of {}",
        r.event_time
    );
    assert_eq!(
        r.s3.object.decoded_key().unwrap(),
        "uploads/b1/red flower+1 %é.jpg"
    );
}

#[test]
fn keys_decode_plus_before_percent() {
    let (_, event) = s3(S3_POST_SPACES);
    assert_eq!(
        event.records[0].s3.object.decoded_key().unwrap(),
        "media/b/f/red flower+1 %é.jpg"
    );
    assert_eq!(decode_key("a+b%2Bc").unwrap(), "a b+c");
    assert_eq!(decode_key("100%").unwrap(), "100%");
    assert_eq!(decode_key("%zz").unwrap(), "%zz");
    assert!(matches!(decode_key("%FF%FE"), Err(EventError::KeyNotUtf8)));
}

#[test]
fn encode_key_round_trips_through_decode() {
    for key in ["uploads/a/b", "sp ace/plus+/pct%/ü/?&=#", "a//b", ""] {
        assert_eq!(decode_key(&encode_key(key)).unwrap(), key);
    }
    assert_eq!(
        encode_key("uploads/red flower+.jpg"),
        "uploads/red+flower%2B.jpg"
    );
}

#[test]
fn test_events_are_recognised_raw_and_wrapped() {
    for fixture in [S3_TEST, MOTO_RAW_TEST, MOTO_SNS_TEST] {
        match parse_body(fixture).unwrap().body {
            EventBody::TestEvent(t) => assert_eq!(t.event, "s3:TestEvent"),
            other => panic!("expected a test event, got {other:?}"),
        }
    }
    let original: Value = serde_json::from_str(S3_TEST).unwrap();
    let EventBody::TestEvent(t) = parse_body(S3_TEST).unwrap().body else {
        unreachable!()
    };
    assert_eq!(serde_json::to_value(&t).unwrap(), original);
}

#[test]
fn other_json_is_passed_through() {
    let body = r#"{"event_name":"IMAGE_REQUESTED","image_id":"x"}"#;
    assert!(matches!(parse_body(body).unwrap().body, EventBody::Json(_)));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(matches!(
        parse_body("not json"),
        Err(EventError::NotJson(_))
    ));
    assert!(matches!(parse_body(""), Err(EventError::NotJson(_))));
    assert!(matches!(
        parse_body(r#"{"Records":[{"eventVersion":2}]}"#),
        Err(EventError::Malformed { .. })
    ));
    let bad_inner = r#"{"Type":"Notification","MessageId":"m","Message":"{not json"}"#;
    assert!(matches!(parse_body(bad_inner), Err(EventError::NotJson(_))));
}

#[test]
fn rejects_other_major_versions() {
    let (_, mut event) = s3(S3_PUT);
    event.records[0].event_version = "3.0".into();
    assert!(matches!(
        event.records[0].check_version(),
        Err(EventError::UnsupportedVersion(_))
    ));
    event.records[0].event_version = "2.9".into();
    event.records[0].check_version().unwrap();
}

#[test]
fn lenient_time_accepts_emulator_shapes() {
    assert!(parse_lenient_time("2026-11-23T20:02:52.718129").is_some());
    assert!(parse_lenient_time("2026-11-23T20:02:52").is_some());
    assert!(parse_lenient_time("2026-11-23T20:02:52.000Z").is_some());
    assert!(parse_lenient_time("2026-11-23T20:02:52+02:00").is_some());
    assert!(parse_lenient_time("yesterday").is_none());
}

#[test]
fn built_events_match_the_s3_shape() {
    let at = OffsetDateTime::from_unix_timestamp(0).unwrap();
    let e = object_created_event(
        "local",
        "uploads",
        "uploads/a b/c+d",
        10,
        "etag",
        "ObjectCreated:Post",
        "01",
        at,
    );
    let json = serde_json::to_string(&e).unwrap();
    let (_, back) = s3(&json);
    assert_eq!(back, e);
    assert_eq!(back.records[0].s3.object.key, "uploads/a+b/c%2Bd");
    assert_eq!(
        back.records[0].s3.object.decoded_key().unwrap(),
        "uploads/a b/c+d"
    );
    assert_eq!(back.records[0].event_time, "1970-01-01T00:00:00Z");
}
