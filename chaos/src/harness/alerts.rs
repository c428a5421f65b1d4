//! Alerts as the nodes publish them: one subscriber per node on `GET
//! /v1/alerts` (Server-Sent Events) for the whole run, reconnecting after
//! kills and restarts, and the check that every alert belongs to an event
//! the workload sent and got acknowledged (DESIGN §4: an alert is never
//! published for an event that could still be lost).
//!
//! Alerts published while a node's subscriber is disconnected are not seen;
//! the check is over what was seen. Duplicates (the same event's alert seen
//! twice) are counted, not a violation: delivery is at-least-once.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::lock;
use super::workload::{Entry, Planned};

/// The producer ids the workload's clients use, followed by their number.
pub const PRODUCER_PREFIX: &str = "chaos-client-";

/// An alert as a node published it.
#[derive(Debug, Clone, Deserialize)]
pub struct Seen {
    /// The key's kind.
    pub kind: String,
    /// The key.
    pub key: String,
    /// The alert.
    pub alert: serde_json::Value,
    /// The event behind it (none for a timer's alert).
    #[serde(default)]
    pub cause: Option<Cause>,
}

/// `(producer, seq)` of the event behind an alert.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cause {
    /// Producer id.
    pub producer: String,
    /// Its seq.
    pub seq: u64,
}

/// Everything the subscribers saw.
#[derive(Default)]
pub struct AlertLog {
    seen: Mutex<Vec<Seen>>,
    /// Alerts a node dropped for a slow subscriber (`lagged` events).
    lagged: Mutex<u64>,
    /// Lines that did not parse as alerts.
    garbled: Mutex<Vec<String>>,
}

/// What the alert check found.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct AlertFindings {
    /// Alerts seen.
    pub seen: u64,
    /// Of which raised by timers (no cause).
    pub from_timers: u64,
    /// Seen more than once (same event, same alert).
    pub duplicates: u64,
    /// Dropped by a node for a slow subscriber.
    pub lagged: u64,
    /// Of events sent but never acknowledged (the run ended first): they
    /// may have been applied, with the acknowledgement lost.
    pub of_ambiguous: u64,
    /// Alerts that break the rule, readable.
    pub violations: Vec<String>,
}

/// Subscribes to each of `urls` (HTTP bases) until `stop`; `bound` caps one
/// connection (a node stopped by SIGSTOP keeps it open without a word).
pub fn watch(
    urls: Vec<String>,
    log: Arc<AlertLog>,
    stop: Arc<AtomicBool>,
    bound: Duration,
) -> Vec<std::thread::JoinHandle<()>> {
    urls.into_iter()
        .map(|base| {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || subscribe(&base, &log, &stop, bound))
        })
        .collect()
}

fn subscribe(base: &str, log: &AlertLog, stop: &AtomicBool, bound: Duration) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(bound))
        .build()
        .into();
    let url = format!("{base}/v1/alerts");
    let until = Instant::now() + bound;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        if let Ok(response) = agent.get(&url).call() {
            let reader = BufReader::new(response.into_body().into_reader());
            let mut event = String::new();
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(name) = line.strip_prefix("event:") {
                    event = name.trim().to_owned();
                } else if let Some(data) = line.strip_prefix("data:") {
                    record(log, &event, data.trim());
                }
            }
        }
        // Killed, restarting or not up yet.
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn record(log: &AlertLog, event: &str, data: &str) {
    match event {
        "alert" => match serde_json::from_str::<Seen>(data) {
            Ok(seen) => lock(&log.seen).push(seen),
            Err(err) => lock(&log.garbled).push(format!("{err}: {data}")),
        },
        "lagged" => *lock(&log.lagged) += data.parse::<u64>().unwrap_or(0),
        _ => {}
    }
}

impl AlertLog {
    /// Checks what was seen against what the workload sent (`events`) and
    /// got acknowledged (`entries`, by event index; the workload's seq is
    /// the index plus one).
    pub fn check(&self, events: &[Planned], entries: &[Entry]) -> AlertFindings {
        let seen = lock(&self.seen).clone();
        let mut findings = AlertFindings {
            seen: seen.len() as u64,
            lagged: *lock(&self.lagged),
            ..AlertFindings::default()
        };
        findings.violations.extend(
            lock(&self.garbled)
                .iter()
                .take(3)
                .map(|g| format!("an alert that does not parse: {g}")),
        );
        let mut copies: BTreeMap<(Cause, String), u64> = BTreeMap::new();
        let mut bad = Vec::new();
        for alert in &seen {
            let Some(cause) = &alert.cause else {
                findings.from_timers += 1;
                continue;
            };
            *copies
                .entry((cause.clone(), alert.alert.to_string()))
                .or_default() += 1;
            match belongs(alert, cause, events, entries) {
                Ok(Acked::Yes) => {}
                Ok(Acked::Ambiguous) => findings.of_ambiguous += 1,
                Err(why) => bad.push(why),
            }
        }
        findings.duplicates = copies.values().map(|n| n - 1).sum();
        if !bad.is_empty() {
            findings.violations.push(format!(
                "{} alerts without an acknowledged event",
                bad.len()
            ));
            findings
                .violations
                .extend(bad.into_iter().take(5).map(|b| format!("  e.g. {b}")));
        }
        findings
    }
}

/// Whether an alert's event was acknowledged.
enum Acked {
    Yes,
    /// Sent, never acknowledged: it may have been applied all the same.
    Ambiguous,
}

/// Whether `alert` belongs to an event the workload sent as such and got
/// acknowledged (or may have: see [`Acked::Ambiguous`]).
fn belongs(
    alert: &Seen,
    cause: &Cause,
    events: &[Planned],
    entries: &[Entry],
) -> Result<Acked, String> {
    let index = cause
        .producer
        .strip_prefix(PRODUCER_PREFIX)
        .and_then(|_| usize::try_from(cause.seq).ok()?.checked_sub(1))
        .filter(|&i| i < events.len())
        .ok_or_else(|| {
            format!(
                "{}/{}: alert {} names {}#{}, which the workload never sent",
                alert.kind, alert.key, alert.alert, cause.producer, cause.seq
            )
        })?;
    let event = &events[index];
    if event.kind != alert.kind || event.key != alert.key {
        return Err(format!(
            "{}/{}: alert {} names {}#{}, an event of {}/{}",
            alert.kind, alert.key, alert.alert, cause.producer, cause.seq, event.kind, event.key
        ));
    }
    match entries.get(index) {
        Some(Entry {
            acked_ms: Some(_), ..
        }) => Ok(Acked::Yes),
        Some(Entry {
            sent_ms: Some(_), ..
        }) => Ok(Acked::Ambiguous),
        _ => Err(format!(
            "{}/{}: alert {} for {}#{}, never sent by the workload",
            alert.kind, alert.key, alert.alert, cause.producer, cause.seq
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(key: &str) -> Planned {
        Planned {
            kind: "device",
            key: key.into(),
            event: serde_json::json!({}),
        }
    }

    fn alert(key: &str, seq: Option<u64>) -> String {
        let cause = seq.map_or(String::new(), |s| {
            format!(r#","cause":{{"producer":"chaos-client-0","seq":{s}}}"#)
        });
        format!(
            r#"{{"partition":1,"seq":9,"ts":5,"kind":"device","key":"{key}","alert":{{"type":"x"}}{cause}}}"#
        )
    }

    #[test]
    fn alerts_of_acknowledged_events_pass_and_others_are_violations() {
        let events = vec![planned("d1"), planned("d2"), planned("d3"), planned("d4")];
        let acked = Entry {
            sent_ms: Some(1),
            acked_ms: Some(2),
        };
        let unsent = Entry {
            sent_ms: None,
            acked_ms: None,
        };
        let ambiguous = Entry {
            sent_ms: Some(1),
            acked_ms: None,
        };
        let entries = vec![acked, unsent, acked, ambiguous];
        let log = AlertLog::default();
        record(&log, "alert", &alert("d1", Some(1)));
        record(&log, "alert", &alert("d1", Some(1)));
        record(&log, "alert", &alert("d3", None));
        record(&log, "alert", &alert("d4", Some(4)));
        record(&log, "lagged", "4");
        let clean = log.check(&events, &entries);
        assert_eq!(
            clean,
            AlertFindings {
                seen: 4,
                from_timers: 1,
                duplicates: 1,
                lagged: 4,
                of_ambiguous: 1,
                violations: vec![],
            }
        );
        // Event 2 was never sent (so never acknowledged); seq 7 is no event
        // of the plan; seq 3 is d3's event, not d1's; and a line that is no
        // alert. (d4's was sent and not acknowledged: ambiguous, allowed.)
        record(&log, "alert", &alert("d2", Some(2)));
        record(&log, "alert", &alert("d1", Some(7)));
        record(&log, "alert", &alert("d1", Some(3)));
        record(&log, "alert", "{not json");
        let findings = log.check(&events, &entries);
        let text = findings.violations.join("\n");
        assert!(
            text.contains("3 alerts without an acknowledged event"),
            "{text}"
        );
        assert!(text.contains("never sent by the workload"), "{text}");
        assert!(text.contains("which the workload never sent"), "{text}");
        assert!(text.contains("an event of device/d3"), "{text}");
        assert!(text.contains("does not parse"), "{text}");
    }
}
