//! The action log as a console gets it when it attaches: in pages of
//! about [`PAGE_BYTES`], each entry as stored; and the newest entries'
//! hashes, to drop their live copies.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::BuildHasher;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::control::{line, ServerMsg, MAX_SERVER_LINE};

/// A history page holds entries up to about this many bytes (one longer
/// entry goes alone).
const PAGE_BYTES: usize = 1024 * 1024;
/// An entry longer than this would not fit in a line the client takes:
/// a notice goes in its place.
const MAX_ENTRY: usize = MAX_SERVER_LINE - 1024;

/// The history as lines of pages, oldest first; the last says `done`.
/// Entries go as stored, never parsed into maps.
pub(super) struct Pages {
    entries: std::vec::IntoIter<String>,
    /// The entry that did not fit in the last page.
    carried: Option<Box<RawValue>>,
    finished: bool,
    /// Entries that are not JSON objects, left out.
    pub(super) skipped: usize,
    /// Entries too long for a line, a notice sent in their place.
    pub(super) replaced: usize,
}

impl Pages {
    pub(super) fn new(entries: Vec<String>) -> Pages {
        Pages {
            entries: entries.into_iter(),
            carried: None,
            finished: false,
            skipped: 0,
            replaced: 0,
        }
    }

    /// The next entry as it goes in a page.
    fn next_entry(&mut self) -> Option<Box<RawValue>> {
        if let Some(entry) = self.carried.take() {
            return Some(entry);
        }
        for mut text in self.entries.by_ref() {
            if !text.trim_start().starts_with('{') {
                self.skipped += 1;
                continue;
            }
            if text.len() > MAX_ENTRY {
                let Some(notice) = too_long(&text) else {
                    self.skipped += 1;
                    continue;
                };
                self.replaced += 1;
                return Some(notice);
            }
            // A newline can only be whitespace between JSON's tokens, and
            // would end the line: a space reads the same.
            if text.contains('\n') {
                text = text.replace('\n', " ");
            }
            match RawValue::from_string(text) {
                Ok(entry) => return Some(entry),
                Err(_) => self.skipped += 1,
            }
        }
        None
    }
}

impl Iterator for Pages {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if self.finished {
            return None;
        }
        let mut entries = Vec::new();
        let mut bytes = 0;
        while let Some(entry) = self.next_entry() {
            let len = entry.get().len() + 1;
            if !entries.is_empty() && bytes + len > PAGE_BYTES {
                self.carried = Some(entry);
                return Some(line(&ServerMsg::History {
                    entries,
                    done: false,
                }));
            }
            bytes += len;
            entries.push(entry);
        }
        self.finished = true;
        Some(line(&ServerMsg::History {
            entries,
            done: true,
        }))
    }
}

/// The notice sent in place of an entry too long for a line, with its `ts`
/// (so it shows where the entry was); `None` if it is not a JSON object.
fn too_long(text: &str) -> Option<Box<RawValue>> {
    #[derive(Deserialize)]
    struct Stamp {
        ts: Option<Value>,
    }
    let stamp: Stamp = serde_json::from_str(text).ok()?;
    let mut notice = Map::new();
    notice.insert("event".into(), "entry_too_long".into());
    notice.insert("bytes".into(), text.len().into());
    if let Some(ts) = stamp.ts {
        notice.insert("ts".into(), ts);
    }
    serde_json::value::to_raw_value(&notice).ok()
}

/// The newest history entries, as hashes of their stored text (8 bytes
/// each, whatever their length), each to drop its live copy once.
pub(super) struct Seen {
    hasher: RandomState,
    hashes: HashSet<u64>,
}

impl Seen {
    pub(super) fn of<'a>(entries: impl Iterator<Item = &'a String>) -> Seen {
        let hasher = RandomState::new();
        let hashes = entries.map(|e| hasher.hash_one(e.as_str())).collect();
        Seen { hasher, hashes }
    }

    /// Whether `entry` was in the history (then forgotten). The engine
    /// stores an entry as this same text.
    pub(super) fn take(&mut self, entry: &Map<String, Value>) -> bool {
        if self.hashes.is_empty() {
            return false;
        }
        let Ok(text) = serde_json::to_string(entry) else {
            return false;
        };
        self.hashes.remove(&self.hasher.hash_one(text.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A page as the client reads it.
    struct Read {
        entries: Vec<Map<String, Value>>,
        done: bool,
        bytes: usize,
    }

    fn read(pages: &mut Pages) -> Vec<Read> {
        pages
            .map(|text| {
                assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
                match serde_json::from_str::<ServerMsg>(&text) {
                    Ok(ServerMsg::History { entries, done }) => Read {
                        entries,
                        done,
                        bytes: text.len(),
                    },
                    other => panic!("not a history page: {other:?}"),
                }
            })
            .collect()
    }

    fn entries(read: Vec<Read>) -> Vec<Map<String, Value>> {
        read.into_iter().flat_map(|r| r.entries).collect()
    }

    #[test]
    fn the_history_goes_in_pages_of_a_mebibyte_each_entry_as_stored() {
        let pad = "x".repeat(1000);
        let mut stored: Vec<String> = (0..3000)
            .map(|n| json!({"event": "e", "n": n, "pad": pad}).to_string())
            .collect();
        // One entry over a page goes alone.
        stored.insert(
            1500,
            json!({"event": "big", "pad": "y".repeat(3 << 20)}).to_string(),
        );
        // Not objects: left out, and the pages still read.
        stored.insert(10, "not json".into());
        stored.insert(20, "[1, 2]".into());
        stored.insert(30, "{\"broken\": ".into());
        // A newline between tokens would end the line.
        stored.insert(40, "{\"event\":\n \"newline\"}".into());
        let mut pages = Pages::new(stored);
        let read = read(&mut pages);
        assert_eq!((pages.skipped, pages.replaced), (3, 0));
        let done: Vec<bool> = read.iter().map(|r| r.done).collect();
        assert_eq!(done.iter().filter(|d| **d).count(), 1, "{done:?}");
        assert_eq!(done.last(), Some(&true));
        for r in &read {
            assert!(
                r.bytes <= PAGE_BYTES + 100 || r.entries.len() == 1,
                "a page of {} entries in {} bytes",
                r.entries.len(),
                r.bytes
            );
        }
        assert!(read.len() > 3, "{} pages", read.len());
        let entries = entries(read);
        assert_eq!(entries.len(), 3002);
        assert_eq!(entries[37]["event"], "newline");
        assert_eq!(entries[1501]["event"], "big");
        let numbers: Vec<u64> = entries
            .iter()
            .filter_map(|e| e.get("n").and_then(Value::as_u64))
            .collect();
        assert_eq!(numbers, (0..3000).collect::<Vec<_>>());
    }

    #[test]
    fn an_empty_history_is_one_last_page() {
        let read = read(&mut Pages::new(Vec::new()));
        assert_eq!(read.len(), 1);
        assert!(read[0].entries.is_empty() && read[0].done);
    }

    #[test]
    fn an_entry_too_long_for_a_line_is_replaced_by_a_notice() {
        let long = json!({"event": "huge", "ts": 7, "pad": "z".repeat(MAX_ENTRY)}).to_string();
        let mut pages = Pages::new(vec![
            json!({"event": "before"}).to_string(),
            long.clone(),
            json!({"event": "after"}).to_string(),
        ]);
        let read = read(&mut pages);
        assert_eq!((pages.skipped, pages.replaced), (0, 1));
        let entries = entries(read);
        assert_eq!(entries.len(), 3);
        assert_eq!(
            Value::Object(entries[1].clone()),
            json!({"event": "entry_too_long", "bytes": long.len(), "ts": 7})
        );
        assert_eq!(entries[2]["event"], "after");
    }

    #[test]
    fn a_live_entry_is_dropped_once_when_the_history_had_it() {
        let entry = json!({"event": "cluster_started", "id": 1, "ts": 5});
        let Value::Object(entry) = entry else {
            unreachable!()
        };
        // As the engine stores it.
        let stored = Value::Object(entry.clone()).to_string();
        let mut seen = Seen::of([stored].iter());
        let mut other = entry.clone();
        other.insert("ts".into(), 6.into());
        assert!(!seen.take(&other));
        assert!(seen.take(&entry));
        assert!(!seen.take(&entry), "once");
    }
}
