//! The report of a process run: `report.json` (verdict and figures, for
//! machines and CI) and `report.html` (the same with an SVG timeline of
//! throughput, latency, membership and the injected faults).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::availability::{Outage, Sample};
use crate::harness::backend::NetworkSummary;
use crate::harness::check::Findings;
use crate::harness::workload::{Journal, Planned};
use crate::scenario::Scenario;

/// A fault as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct FaultSpan {
    /// Start, s since the workload started.
    pub start_s: f64,
    /// End (undone or healed), if it was.
    pub end_s: Option<f64>,
    /// What it was.
    pub label: String,
}

/// Membership as the running nodes saw it at one moment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemberSample {
    /// s since start.
    pub t_s: f64,
    /// Fewest members up in any node's view.
    pub min_up: usize,
    /// Most members up in any node's view.
    pub max_up: usize,
    /// Nodes that answered.
    pub answering: usize,
}

/// One second of the run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Second {
    /// Second since start.
    pub t: u64,
    /// Events acknowledged in it.
    pub acked: u64,
    /// Slowest acknowledgement in it (first attempt to ack), ms.
    pub max_latency_ms: u64,
    /// Refused or failed attempts in it.
    pub errors: u64,
}

/// A partition's longest wait, from an event's first send to its ack.
#[derive(Debug, Clone, Serialize)]
pub struct Unavailability {
    /// Partition.
    pub partition: u32,
    /// Longest wait, ms.
    pub longest_ms: u64,
    /// When that event was first sent, s since start.
    pub at_s: f64,
}

/// Figures of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Events planned for the window.
    pub planned: u64,
    /// Events sent at least once.
    pub sent: u64,
    /// Events acknowledged.
    pub acked: u64,
    /// Events the keys hold.
    pub applied: u64,
    /// Acknowledged events missing.
    pub lost: u64,
    /// Events applied twice.
    pub duplicated: u64,
    /// Sent, never acknowledged.
    pub ambiguous: u64,
    /// Keys read back.
    pub keys: usize,
    /// Keys whose state differs from the model.
    pub model_mismatches: u64,
    /// Faults injected.
    pub faults: usize,
    /// Takeovers the nodes counted.
    pub takeovers: u64,
    /// Alerts seen during the run (all nodes' streams) and their check.
    pub alerts: crate::harness::alerts::AlertFindings,
    /// Acknowledgement latency (first send to ack) of events: p50, p99, max.
    pub ack_latency_ms: [u64; 3],
    /// The longest time a partition had writes outstanding and
    /// acknowledged none ([`crate::availability`]).
    pub longest_unavailable: Option<Outage>,
    /// The scenario's bound on it, s (`max_unavailable_s`).
    pub max_unavailable_s: f64,
    /// From healing to a converged cluster, ms.
    pub converged_after_ms: Option<u64>,
    /// Wall time of the run, s.
    pub wall_s: f64,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// "pass" or "fail".
    pub verdict: String,
    /// Why it failed.
    pub violations: Vec<String>,
    /// The numbers.
    pub figures: Figures,
    /// Partitions that waited more than a second, longest first.
    pub unavailability: Vec<Unavailability>,
    /// Faults as injected.
    pub faults: Vec<FaultSpan>,
    /// Per second.
    pub timeline: Vec<Second>,
    /// Membership samples.
    pub members: Vec<MemberSample>,
    /// Which backend made the network faults real.
    pub network: NetworkSummary,
}

impl Report {
    /// Assembles the report.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        scenario: &Scenario,
        events: &[Planned],
        journal: &Journal,
        findings: Findings,
        faults: Vec<FaultSpan>,
        members: Vec<MemberSample>,
        converged_after_ms: Option<u64>,
        wall: Duration,
        network: NetworkSummary,
    ) -> Report {
        let entries = journal
            .entries
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        let mut latencies: Vec<u64> = entries
            .iter()
            .filter_map(|e| Some(e.acked_ms? - e.sent_ms?))
            .collect();
        latencies.sort_unstable();
        let pct = |q: f64| -> u64 {
            if latencies.is_empty() {
                return 0;
            }
            latencies[((latencies.len() - 1) as f64 * q).round() as usize]
        };
        let mut seconds: BTreeMap<u64, Second> = BTreeMap::new();
        for ack in journal.acks.lock().map(|a| a.clone()).unwrap_or_default() {
            let s = seconds.entry(ack.at_ms / 1000).or_default();
            s.acked += ack.events as u64;
            s.max_latency_ms = s.max_latency_ms.max(ack.latency_ms);
        }
        for (at, _) in journal.errors.lock().map(|e| e.clone()).unwrap_or_default() {
            seconds.entry(at / 1000).or_default().errors += 1;
        }
        let timeline = seconds
            .into_iter()
            .map(|(t, s)| Second { t, ..s })
            .collect();
        let partitions = eddy_core::DEFAULT_PARTITIONS;
        let mut worst: BTreeMap<u32, Unavailability> = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            let (Some(sent), Some(acked)) = (e.sent_ms, e.acked_ms) else {
                continue;
            };
            let wait = acked - sent;
            if wait < 1000 {
                continue;
            }
            let p = eddy_core::partition_of(events[i].kind, &events[i].key, partitions).0;
            let slot = worst.entry(p).or_insert(Unavailability {
                partition: p,
                longest_ms: 0,
                at_s: 0.0,
            });
            if wait > slot.longest_ms {
                slot.longest_ms = wait;
                slot.at_s = sent as f64 / 1000.0;
            }
        }
        let samples: Vec<Sample> = entries
            .iter()
            .zip(events)
            .map(|(e, planned)| Sample {
                partition: eddy_core::partition_of(planned.kind, &planned.key, partitions).0,
                sent_ms: e.sent_ms,
                acked_ms: e.acked_ms,
            })
            .collect();
        let longest_unavailable =
            crate::availability::longest_outage(&samples, wall.as_millis() as u64);
        let mut violations = findings.violations.clone();
        if let Some(outage) = longest_unavailable
            && outage.longest_ms as f64 > scenario.max_unavailable_s * 1000.0
        {
            violations.push(format!(
                "partition {} could not acknowledge for {:.1} s{} from {:.1} s; max_unavailable_s = {}",
                outage.partition,
                outage.longest_ms as f64 / 1000.0,
                if outage.to_end { " (until the end)" } else { "" },
                outage.from_s,
                scenario.max_unavailable_s
            ));
        }
        let mut unavailability: Vec<Unavailability> = worst.into_values().collect();
        unavailability.sort_by_key(|u| std::cmp::Reverse(u.longest_ms));
        let sent = entries.iter().filter(|e| e.sent_ms.is_some()).count() as u64;
        let acked = entries.iter().filter(|e| e.acked_ms.is_some()).count() as u64;
        Report {
            scenario: scenario.name.clone(),
            verdict: if violations.is_empty() {
                "pass"
            } else {
                "fail"
            }
            .into(),
            violations,
            figures: Figures {
                planned: events.len() as u64,
                sent,
                acked,
                applied: findings.applied,
                lost: findings.lost,
                duplicated: findings.duplicated,
                ambiguous: findings.ambiguous,
                keys: findings.keys,
                model_mismatches: findings.model_mismatches,
                faults: faults.len(),
                takeovers: findings.takeovers,
                alerts: findings.alerts.clone(),
                ack_latency_ms: [pct(0.5), pct(0.99), latencies.last().copied().unwrap_or(0)],
                longest_unavailable,
                max_unavailable_s: scenario.max_unavailable_s,
                converged_after_ms,
                wall_s: wall.as_secs_f64(),
            },
            unavailability,
            faults,
            timeline,
            members,
            network,
        }
    }

    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }

    /// Writes `report.json` and `report.html` into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("report.json"), json)?;
        std::fs::write(dir.join("report.html"), self.html())
    }

    /// A one-screen summary for the terminal.
    pub fn summary(&self) -> String {
        let f = &self.figures;
        let mut out = String::new();
        let _ = writeln!(out, "scenario          {}", self.scenario);
        let _ = writeln!(out, "verdict           {}", self.verdict.to_uppercase());
        let _ = writeln!(out, "events sent       {} of {} planned", f.sent, f.planned);
        let _ = writeln!(out, "acknowledged      {}", f.acked);
        let _ = writeln!(out, "applied           {} over {} keys", f.applied, f.keys);
        let _ = writeln!(out, "lost              {}", f.lost);
        let _ = writeln!(out, "applied twice     {}", f.duplicated);
        let _ = writeln!(out, "ambiguous         {}", f.ambiguous);
        let _ = writeln!(out, "model mismatches  {}", f.model_mismatches);
        let _ = writeln!(out, "faults / takeovers {} / {}", f.faults, f.takeovers);
        let n = &self.network;
        let _ = write!(
            out,
            "network           {}: links by {}, delay by {}",
            n.backend, n.links_by, n.delay_by
        );
        if let (Some(cut), Some(loss)) = (n.dropped_cut_packets, n.dropped_loss_packets) {
            let _ = write!(out, "; dropped {cut} packets cut, {loss} lost");
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "alerts seen       {} ({} from timers, {} seen twice, {} dropped for a slow reader)",
            f.alerts.seen, f.alerts.from_timers, f.alerts.duplicates, f.alerts.lagged
        );
        let _ = writeln!(
            out,
            "ack latency       p50 {} ms, p99 {} ms, max {} ms",
            f.ack_latency_ms[0], f.ack_latency_ms[1], f.ack_latency_ms[2]
        );
        if let Some(worst) = self.unavailability.first() {
            let _ = writeln!(
                out,
                "longest wait      {} ms (partition {} at {:.1} s); {} partitions waited > 1 s",
                worst.longest_ms,
                worst.partition,
                worst.at_s,
                self.unavailability.len()
            );
        }
        let _ = writeln!(out, "unavailable       {}", self.unavailable_line());
        match f.converged_after_ms {
            Some(ms) => {
                let _ = writeln!(out, "converged         {ms} ms after healing");
            }
            None => {
                let _ = writeln!(out, "converged         NO");
            }
        }
        for v in &self.violations {
            let _ = writeln!(out, "violation         {v}");
        }
        out
    }

    /// The longest unavailability and its bound, in words.
    fn unavailable_line(&self) -> String {
        let bound = self.figures.max_unavailable_s;
        match self.figures.longest_unavailable {
            Some(o) => format!(
                "longest {:.1} s{} (partition {} from {:.1} s); bound {bound} s",
                o.longest_ms as f64 / 1000.0,
                if o.to_end { ", until the end" } else { "" },
                o.partition,
                o.from_s
            ),
            None => format!("nothing sent; bound {bound} s"),
        }
    }

    fn html(&self) -> String {
        let end = self
            .timeline
            .last()
            .map(|s| s.t as f64 + 1.0)
            .unwrap_or(1.0)
            .max(self.members.last().map(|m| m.t_s).unwrap_or(1.0));
        let (w, left) = (1000.0, 60.0);
        let x = |t: f64| left + (w - left - 10.0) * t / end;
        let mut svg = String::new();
        // The top of a chart's scale: its largest value, at least 1.
        let peak = |values: &mut dyn Iterator<Item = u64>| values.max().unwrap_or(1).max(1) as f64;
        let max_acked = peak(&mut self.timeline.iter().map(|s| s.acked));
        let max_lat = peak(&mut self.timeline.iter().map(|s| s.max_latency_ms));
        let max_members = peak(&mut self.members.iter().map(|m| m.max_up as u64));
        // Fault bands behind everything.
        for (i, f) in self.faults.iter().enumerate() {
            let x0 = x(f.start_s);
            let x1 = x(f.end_s.unwrap_or(f.start_s + 0.2)).max(x0 + 2.0);
            let _ = write!(
                svg,
                r##"<rect x="{x0:.1}" y="20" width="{:.1}" height="440" fill="#cf222e" opacity="0.12"/><text x="{x0:.1}" y="{}" font-size="11" fill="#cf222e">{}</text>"##,
                x1 - x0,
                14 + (i % 3) * 11,
                html_escape(&f.label)
            );
        }
        let lane = |svg: &mut String,
                    top: f64,
                    title: &str,
                    points: Vec<(f64, f64)>,
                    max: f64,
                    colour: &str,
                    unit: &str| {
            let h = 120.0;
            let _ = write!(
                svg,
                r##"<text x="4" y="{:.0}" font-size="12" fill="#57606a">{title}</text><text x="4" y="{:.0}" font-size="11" fill="#57606a">max {max:.0}{unit}</text><line x1="{left}" y1="{:.0}" x2="{w}" y2="{:.0}" stroke="#d0d7de"/>"##,
                top + 14.0,
                top + 28.0,
                top + h,
                top + h
            );
            let pts: Vec<String> = points
                .iter()
                .map(|(t, v)| format!("{:.1},{:.1}", x(*t), top + h - h * v / max))
                .collect();
            let _ = write!(
                svg,
                r##"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"##,
                pts.join(" ")
            );
        };
        lane(
            &mut svg,
            30.0,
            "acked/s",
            self.timeline
                .iter()
                .map(|s| (s.t as f64 + 0.5, s.acked as f64))
                .collect(),
            max_acked,
            "#0969da",
            "",
        );
        lane(
            &mut svg,
            175.0,
            "latency",
            self.timeline
                .iter()
                .map(|s| (s.t as f64 + 0.5, s.max_latency_ms as f64))
                .collect(),
            max_lat,
            "#bc4c00",
            " ms",
        );
        lane(
            &mut svg,
            320.0,
            "members up",
            self.members
                .iter()
                .map(|m| (m.t_s, m.min_up as f64))
                .collect(),
            max_members,
            "#1f883d",
            "",
        );
        for t in (0..=end as u64).step_by(5) {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="478" font-size="10" fill="#57606a">{t}s</text>"##,
                x(t as f64)
            );
        }
        let figures = serde_json::to_string_pretty(&self.figures).unwrap_or_default();
        let network = html_escape(&serde_json::to_string_pretty(&self.network).unwrap_or_default());
        let violations: String = self
            .violations
            .iter()
            .map(|v| format!("<li>{}</li>", html_escape(v)))
            .collect();
        let faults: String = self
            .faults
            .iter()
            .map(|f| {
                format!(
                    "<tr><td>{:.1}</td><td>{}</td><td>{}</td></tr>",
                    f.start_s,
                    f.end_s.map(|e| format!("{e:.1}")).unwrap_or_default(),
                    html_escape(&f.label)
                )
            })
            .collect();
        format!(
            r##"<!doctype html><html><head><meta charset="utf-8"><title>eddy-chaos: {name}</title>
<style>body{{font:14px system-ui,sans-serif;margin:1.5em;color:#1d232b}} .pass{{color:#1f883d}} .fail{{color:#cf222e}} pre{{background:#f6f8fa;padding:.8em}} td{{padding:.1em .8em}}</style></head>
<body><h1>eddy-chaos: {name} <span class="{verdict}">{verdict_upper}</span></h1>
<ul>{violations}</ul>
<p>Availability: {unavailable}</p>
<svg viewBox="0 0 1000 485" width="100%" style="max-width:1100px;border:1px solid #d0d7de">{svg}</svg>
<h2>Faults</h2><table><tr><th>start s</th><th>end s</th><th>fault</th></tr>{faults}</table>
<h2>Figures</h2><pre>{figures}</pre>
<h2>Network backend</h2><pre>{network}</pre></body></html>
"##,
            name = html_escape(&self.scenario),
            verdict = self.verdict,
            verdict_upper = self.verdict.to_uppercase(),
            unavailable = html_escape(&self.unavailable_line()),
        )
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
