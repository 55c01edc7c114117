//! The metrics server, from outside: its text format.

use std::collections::HashMap;

use super::http_get;

/// Every sample of the text format, by its series (`name{labels}`).
pub fn scrape(port: u16) -> HashMap<String, f64> {
    let (status, body) = http_get(port, "/metrics").expect("a scrape");
    assert_eq!(status, 200, "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("a sample: {l}"));
            let value = value.parse().unwrap_or_else(|_| panic!("a number: {l}"));
            (series.to_string(), value)
        })
        .collect()
}
