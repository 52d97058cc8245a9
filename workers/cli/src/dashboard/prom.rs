//! A small reader of the Prometheus text exposition format, and the arithmetic the dashboard
//! needs on it: summing series by a label, and quantiles of a bucketed histogram (the same
//! linear interpolation as PromQL's `histogram_quantile`).
//!
//! The dashboard reads the in-process recorder's rendered text rather than its internals, so it
//! sees exactly what `/metrics` serves and needs no second recorder.

use std::collections::BTreeMap;

/// One sample line: `name{label="value",…} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (with its `_bucket`/`_sum`/`_count` suffix, if any).
    pub name: String,
    /// Labels, sorted by name.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// A label's value, or `""`.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// Parse exposition text; comment lines and lines that do not parse are skipped (the text
/// comes from our own recorder, so a skipped line means a format this reader does not need).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let end;
        loop {
            // Skip separators, find `key="`.
            while let Some((_, c)) = chars.peek() {
                if *c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            match chars.peek() {
                Some((i, '}')) => {
                    end = *i;
                    break;
                }
                None => return None,
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, '"') => break,
                    (_, c) => value.push(c),
                }
            }
            labels.insert(key.trim().to_owned(), value);
        }
        rest = &body[end + 1..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Sum of every series named `name` whose `label` equals `value`, grouped by `by`.
pub fn sum_by(
    samples: &[Sample],
    name: &str,
    filter: (&str, &str),
    by: &str,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.name == name && s.label(filter.0) == filter.1)
    {
        *out.entry(s.label(by).to_owned()).or_insert(0.0) += s.value;
    }
    out
}

/// Cumulative bucket counts `(le, count)` of histogram `name` (without `_bucket`) over every
/// series whose `label` equals `value`, summed across the other labels and sorted by `le`.
pub fn buckets(samples: &[Sample], name: &str, filter: (&str, &str)) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    let mut by_le: Vec<(f64, f64)> = Vec::new();
    for s in samples
        .iter()
        .filter(|s| s.name == bucket && s.label(filter.0) == filter.1)
    {
        let le = match s.label("le") {
            "+Inf" => f64::INFINITY,
            v => match v.parse() {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        match by_le.iter_mut().find(|(l, _)| *l == le) {
            Some((_, c)) => *c += s.value,
            None => by_le.push((le, s.value)),
        }
    }
    by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_le
}

/// `later - earlier`, bucket by bucket (for a window); buckets missing from `earlier` count 0.
pub fn bucket_delta(later: &[(f64, f64)], earlier: &[(f64, f64)]) -> Vec<(f64, f64)> {
    later
        .iter()
        .map(|(le, c)| {
            let before = earlier
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, c)| *c);
            (*le, (c - before).max(0.0))
        })
        .collect()
}

/// The `q` quantile of cumulative buckets, interpolated linearly inside the bucket that holds
/// it (PromQL `histogram_quantile`): `None` without observations; the highest finite bound
/// when the quantile falls in the `+Inf` bucket.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            if count == prev.1 {
                return Some(le);
            }
            return Some(prev.0 + (le - prev.0) * (rank - prev.1) / (count - prev.1));
        }
        prev = (le, count);
    }
    Some(prev.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE prism_messages_processed_total counter
prism_messages_processed_total{worker="resize",outcome="success"} 7
prism_messages_processed_total{worker="resize",outcome="retry"} 2
prism_messages_processed_total{worker="metadata",outcome="success"} 5
prism_errors_total{worker="resize",stage="processing",error_code="undecodable_image"} 1
prism_build_info{version="0.1.0",git_sha="a\"b\\c"} 1
prism_message_processing_duration_seconds_bucket{worker="resize",outcome="success",le="0.1"} 2
prism_message_processing_duration_seconds_bucket{worker="resize",outcome="success",le="1"} 6
prism_message_processing_duration_seconds_bucket{worker="resize",outcome="success",le="+Inf"} 7
prism_message_processing_duration_seconds_bucket{worker="resize",outcome="retry",le="0.1"} 2
prism_message_processing_duration_seconds_bucket{worker="resize",outcome="retry",le="1"} 2
prism_message_processing_duration_seconds_bucket{worker="resize",outcome="retry",le="+Inf"} 2
prism_message_processing_duration_seconds_sum{worker="resize",outcome="success"} 4.2
no_labels 3.5
"#;

    #[test]
    fn parses_labels_escapes_and_values() {
        let s = parse(TEXT);
        assert_eq!(s.len(), 13);
        assert_eq!(s[0].label("outcome"), "success");
        assert!((s[0].value - 7.0).abs() < f64::EPSILON);
        assert_eq!(s[4].label("git_sha"), "a\"b\\c");
        assert_eq!(s[12].name, "no_labels");
        assert!(s[12].labels.is_empty());
    }

    #[test]
    fn sums_series_by_label() {
        let s = parse(TEXT);
        let by = sum_by(
            &s,
            "prism_messages_processed_total",
            ("worker", "resize"),
            "outcome",
        );
        assert_eq!(by.get("success"), Some(&7.0));
        assert_eq!(by.get("retry"), Some(&2.0));
        assert_eq!(by.len(), 2);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket_over_summed_series() {
        let s = parse(TEXT);
        let b = buckets(
            &s,
            "prism_message_processing_duration_seconds",
            ("worker", "resize"),
        );
        assert_eq!(b, vec![(0.1, 4.0), (1.0, 8.0), (f64::INFINITY, 9.0)]);
        // rank 4.5 of 9 lies in (0.1, 1]: 0.1 + 0.9 * 0.5/4.
        let p50 = quantile(0.5, &b).unwrap();
        assert!((p50 - 0.2125).abs() < 1e-9, "{p50}");
        // rank 8.55 lies in +Inf: the highest finite bound.
        assert_eq!(quantile(0.95, &b), Some(1.0));
        assert_eq!(quantile(0.5, &[]), None);
        assert_eq!(quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
    }

    #[test]
    fn bucket_deltas_make_a_window() {
        let later = vec![(0.1, 4.0), (1.0, 8.0), (f64::INFINITY, 9.0)];
        let earlier = vec![(0.1, 4.0), (1.0, 5.0)];
        assert_eq!(
            bucket_delta(&later, &earlier),
            vec![(0.1, 0.0), (1.0, 3.0), (f64::INFINITY, 9.0)]
        );
    }

    #[test]
    fn skips_comments_and_garbage() {
        assert!(parse("# HELP x y\n\nnot a metric line {\n").is_empty());
    }
}
