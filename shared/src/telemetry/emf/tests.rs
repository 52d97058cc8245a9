//! The EMF documents against the published specification ("Specification: Embedded metric
//! format", Amazon CloudWatch User Guide): the root `_aws` metadata object with a millisecond
//! `Timestamp` and `CloudWatchMetrics` directives; each directive a `Namespace`, `Dimensions`
//! (arrays of at most 30 keys, each naming a root member whose value is a string) and `Metrics`
//! (at most 100 definitions with `Name`, optional `Unit` from CloudWatch's unit list and
//! optional `StorageResolution` 1 or 60, each `Name` a root member); metric values numbers,
//! arrays of at most 100 numbers, or `Values`/`Counts` arrays (at most 100, equal lengths) with
//! `Max`, `Min`, `Count` and `Sum`.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::telemetry::metrics as m;

/// CloudWatch's `StandardUnit` values.
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

fn settings() -> EmfSettings {
    EmfSettings {
        namespace: "prism/test".into(),
    }
}

fn enabled() -> EmfRecorder {
    let r = EmfRecorder::new();
    r.enable();
    r
}

fn number(v: &Value) -> bool {
    v.as_f64().is_some_and(f64::is_finite)
}

/// Every rule of the specification a document can break; panics naming the first one broken.
pub(crate) fn check_spec(line: &str) -> Value {
    assert!(!line.contains('\n'), "one document per line");
    let doc: Value = serde_json::from_str(line).expect("a document is one JSON object");
    let root = doc.as_object().expect("the root node is an object");
    let aws = root["_aws"].as_object().expect("_aws is an object");
    for k in aws.keys() {
        assert!(
            ["Timestamp", "CloudWatchMetrics"].contains(&k.as_str()),
            "unknown _aws member {k}"
        );
    }
    assert!(aws["Timestamp"].is_u64(), "Timestamp: ms since the epoch");
    let directives = aws["CloudWatchMetrics"].as_array().expect("an array");
    assert!(!directives.is_empty());
    for d in directives {
        let d = d.as_object().expect("a directive is an object");
        let mut keys: Vec<&str> = d.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["Dimensions", "Metrics", "Namespace"],
            "directive members"
        );
        let ns = d["Namespace"].as_str().expect("Namespace is a string");
        assert!((1..=255).contains(&ns.len()) && !ns.starts_with("AWS/"));
        for set in d["Dimensions"].as_array().expect("Dimensions is an array") {
            let set = set.as_array().expect("a DimensionSet is an array");
            assert!(set.len() <= MAX_DIMENSIONS_PER_SET);
            for key in set {
                let key = key.as_str().expect("dimension keys are strings");
                let value = root[key].as_str().unwrap_or_else(|| {
                    panic!("dimension {key} must be a string member of the root")
                });
                assert!((1..=1024).contains(&value.len()));
            }
        }
        let metrics = d["Metrics"].as_array().expect("Metrics is an array");
        assert!(
            !metrics.is_empty() && metrics.len() <= 100,
            "1..=100 metrics"
        );
        let mut names = HashSet::new();
        for def in metrics {
            let def = def.as_object().expect("a MetricDefinition is an object");
            for k in def.keys() {
                assert!(
                    ["Name", "Unit", "StorageResolution"].contains(&k.as_str()),
                    "unknown MetricDefinition member {k}"
                );
            }
            let name = def["Name"].as_str().expect("Name is a string");
            assert!((1..=255).contains(&name.len()));
            assert!(names.insert(name), "{name} twice in one directive");
            if let Some(u) = def.get("Unit") {
                assert!(UNITS.contains(&u.as_str().unwrap()), "unit {u}");
            }
            if let Some(r) = def.get("StorageResolution") {
                assert!(r == 1 || r == 60);
            }
            let v = &root[name];
            match v {
                Value::Number(_) => assert!(number(v)),
                Value::Array(a) => assert!(a.len() <= 100 && a.iter().all(number)),
                Value::Object(h) => {
                    let values = h["Values"].as_array().expect("Values");
                    let counts = h["Counts"].as_array().expect("Counts");
                    assert!(!values.is_empty() && values.len() <= 100);
                    assert_eq!(values.len(), counts.len(), "one count per value");
                    assert!(values.iter().chain(counts).all(number));
                    for k in ["Max", "Min", "Count", "Sum"] {
                        assert!(number(&h[k]), "{k}");
                    }
                    let total: f64 = counts.iter().map(|c| c.as_f64().unwrap()).sum();
                    assert!((total - h["Count"].as_f64().unwrap()).abs() < 1e-9);
                    assert!(h["Min"].as_f64() <= h["Max"].as_f64());
                }
                other => panic!("metric {name} has no numeric value: {other}"),
            }
        }
    }
    doc
}

fn flush(r: &EmfRecorder) -> Vec<Value> {
    r.flush(&settings(), 1_700_000_000_000)
        .iter()
        .map(|l| check_spec(l))
        .collect()
}

fn find<'a>(docs: &'a [Value], name: &str, dims: &[(&str, &str)]) -> &'a Value {
    docs.iter()
        .find(|d| {
            d.get(name).is_some()
                && dims.iter().all(|(k, v)| d[*k] == *v)
                && d["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]
                    .as_array()
                    .unwrap()
                    .len()
                    == dims.len()
        })
        .unwrap_or_else(|| panic!("no {name} {dims:?} in {docs:#?}"))
}

#[test]
fn worker_metrics_become_spec_conformant_documents() {
    let r = enabled();
    metrics::with_local_recorder(&r, || {
        for _ in 0..3 {
            m::message_received("resize", Duration::from_millis(200));
            m::message_processed("resize", "success", Duration::from_millis(1500));
        }
        m::message_processed("resize", "dead_letter", Duration::from_millis(40));
        m::error(
            "resize",
            "processing",
            crate::error::ErrorCode::UndecodableImage,
        );
        m::image_rendered("avif", 40_000);
        m::inflight("resize", 2);
    });
    let docs = flush(&r);
    let ok = find(
        &docs,
        m::MESSAGES_PROCESSED,
        &[("worker", "resize"), ("outcome", "success")],
    );
    assert_eq!(ok[m::MESSAGES_PROCESSED], 3.0);
    let d = &ok[m::MESSAGE_PROCESSING_DURATION];
    assert_eq!(d["Values"], serde_json::json!([1.5]));
    assert_eq!(d["Counts"], serde_json::json!([3.0]));
    assert_eq!(d["Count"], 3.0);
    // Both metrics of the group share one document, with a per-worker roll-up.
    assert_eq!(
        ok["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([["outcome", "worker"], ["worker"]])
    );
    let units: Vec<(&str, &str)> = ok["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["Name"].as_str().unwrap(), d["Unit"].as_str().unwrap()))
        .collect();
    assert!(units.contains(&(m::MESSAGE_PROCESSING_DURATION, "Seconds")));
    assert!(units.contains(&(m::MESSAGES_PROCESSED, "Count")));
    let err = find(
        &docs,
        m::ERRORS,
        &[
            ("worker", "resize"),
            ("stage", "processing"),
            ("error_code", "undecodable_image"),
        ],
    );
    assert_eq!(err[m::ERRORS], 1.0);
    assert_eq!(
        find(&docs, m::IMAGES_RENDERED, &[("format", "avif")])[m::IMAGES_RENDERED],
        1.0
    );
    assert_eq!(
        find(&docs, m::INFLIGHT_MESSAGES, &[("worker", "resize")])[m::INFLIGHT_MESSAGES],
        2.0
    );
    assert_eq!(
        docs[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "prism/test"
    );
    assert_eq!(docs[0]["_aws"]["Timestamp"], 1_700_000_000_000u64);

    // The next flush carries increases since this one: counters 0, histograms absent.
    metrics::with_local_recorder(&r, || {
        m::message_processed("resize", "success", Duration::from_millis(20));
    });
    let docs = flush(&r);
    let ok = find(
        &docs,
        m::MESSAGES_PROCESSED,
        &[("worker", "resize"), ("outcome", "success")],
    );
    assert_eq!(ok[m::MESSAGES_PROCESSED], 1.0);
    assert_eq!(
        ok[m::MESSAGE_PROCESSING_DURATION]["Values"],
        serde_json::json!([0.02])
    );
    let dl = find(
        &docs,
        m::MESSAGES_PROCESSED,
        &[("worker", "resize"), ("outcome", "dead_letter")],
    );
    assert_eq!(dl[m::MESSAGES_PROCESSED], 0.0);
    assert!(dl.get(m::MESSAGE_PROCESSING_DURATION).is_none());
}

#[test]
fn off_by_default_records_nothing() {
    let r = EmfRecorder::new();
    metrics::with_local_recorder(&r, || {
        m::message_processed("resize", "success", Duration::from_millis(1));
    });
    assert!(r.flush(&settings(), 0).is_empty());
}

#[test]
fn dimensions_come_from_the_closed_key_set_only() {
    let r = enabled();
    metrics::with_local_recorder(&r, || {
        // A client-chosen width as a label, and a value no one should see as a dimension.
        for w in 1..=50u32 {
            metrics::counter!(m::IMAGES_RENDERED, "format" => "webp", "variant" => w.to_string())
                .increment(1);
        }
        metrics::counter!(m::ERRORS, "worker" => "resize", "stage" => "x".repeat(500), "error_code" => "a\u{7f}b")
            .increment(1);
        metrics::gauge!(m::BUILD_INFO, "version" => "1").set(1.0);
    });
    let docs = flush(&r);
    let rendered = find(&docs, m::IMAGES_RENDERED, &[("format", "webp")]);
    assert_eq!(
        rendered[m::IMAGES_RENDERED],
        50.0,
        "one series for all widths"
    );
    assert!(docs.iter().all(|d| d.get("variant").is_none()));
    let e = find(
        &docs,
        m::ERRORS,
        &[
            ("worker", "resize"),
            ("stage", "other"),
            ("error_code", "other"),
        ],
    );
    assert_eq!(e[m::ERRORS], 1.0);
    assert!(docs.iter().all(|d| d.get(m::BUILD_INFO).is_none()));
}

#[test]
fn series_count_is_bounded() {
    let r = enabled();
    metrics::with_local_recorder(&r, || {
        for q in 0..(MAX_SERIES + 500) {
            metrics::gauge!(m::QUEUE_VISIBLE_MESSAGES, "queue" => format!("q{q}")).set(1.0);
        }
    });
    let docs = flush(&r);
    assert_eq!(docs.len(), MAX_SERIES);
}

#[test]
fn many_histogram_values_and_metrics_split_into_bounded_documents() {
    let r = enabled();
    metrics::with_local_recorder(&r, || {
        // 2000 samples, 1 ms apart: more distinct (rounded) values than one document may hold.
        for i in 1..=2000u32 {
            m::message_processed("metadata", "success", Duration::from_millis(u64::from(i)));
        }
        for i in 0..250 {
            metrics::counter!(format!("prism_test_{i}_total"), "worker" => "archiver").increment(1);
        }
    });
    let lines = r.flush(&settings(), 1);
    let docs: Vec<Value> = lines.iter().map(|l| check_spec(l)).collect();
    assert!(lines.iter().all(|l| l.len() <= MAX_DOCUMENT_BYTES + 4096));
    let hist: Vec<&Value> = docs
        .iter()
        .filter_map(|d| d.get(m::MESSAGE_PROCESSING_DURATION))
        .collect();
    assert!(hist.len() >= 2, "split over several documents");
    let total: f64 = hist.iter().map(|h| h["Count"].as_f64().unwrap()).sum();
    assert!((total - 2000.0).abs() < 1e-9, "every sample counted once");
    let max = hist
        .iter()
        .map(|h| h["Max"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!((max - 2.0).abs() < 0.1, "max {max}");
    let test_metrics: usize = docs
        .iter()
        .filter(|d| d["worker"] == "archiver")
        .map(|d| {
            d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(test_metrics, 250);
}

#[test]
fn histogram_bins_are_bounded_and_rounding_is_within_five_percent() {
    let r = enabled();
    metrics::with_local_recorder(&r, || {
        for i in 0..5000u32 {
            m::message_processed(
                "resize",
                "success",
                Duration::from_secs_f64(1e-6 * 1.01f64.powi(i as i32)),
            );
        }
    });
    let docs = flush(&r);
    let values: usize = docs
        .iter()
        .filter_map(|d| d.get(m::MESSAGE_PROCESSING_DURATION))
        .map(|h| h["Values"].as_array().unwrap().len())
        .sum();
    assert!(values <= MAX_HISTOGRAM_BINS, "{values} bins");
    for v in [0.000_123_4, 1.0, 1.49, 0.9951, 37.3, 123_456.0] {
        let r = round2(v);
        assert!((r - v).abs() / v <= 0.05, "{v} -> {r}");
    }
    assert_eq!(round2(0.0), 0.0);
}

#[test]
fn units_follow_the_name_suffix() {
    assert_eq!(unit_of(m::MESSAGE_PROCESSING_DURATION), "Seconds");
    assert_eq!(unit_of(m::RENDER_OUTPUT_SIZE), "Bytes");
    assert_eq!(unit_of(m::HTTP_REQUEST_BODY_BYTES), "Bytes");
    assert_eq!(unit_of(m::MESSAGES_PROCESSED), "Count");
    for name in m::ALL {
        assert!(UNITS.contains(&unit_of(name)));
    }
}

#[test]
fn write_puts_one_document_per_line() {
    let r = enabled();
    metrics::with_local_recorder(&r, || {
        m::message_processed("archiver", "success", Duration::from_millis(3));
        m::error(
            "archiver",
            "sending",
            crate::error::ErrorCode::StoreUnavailable,
        );
    });
    let mut out = Vec::new();
    r.write(&settings(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for l in lines {
        check_spec(l);
    }
}
