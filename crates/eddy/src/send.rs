//! `eddy send`: NDJSON events from a file or stdin, sent over the binary
//! protocol in pipelined batches. Each line is
//! `{"kind": …, "key": …, "event": {…}, "producer"?: …, "seq"?: …}`; a bad
//! line is reported with its number and skipped.
//!
//! Over the binary protocol, events of the kinds this binary links are
//! encoded here (the node is spared the JSON); events of any other kind go
//! as JSON for the node to encode (`SubmitJson`), so every kind the node
//! hosts works — a behaviour of your own, served by your own binary. `--http`
//! sends the lines as they are, as NDJSON to `POST /v1/events`.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use eddy_client::{Ack, Client, ClientError};
use eddy_core::wire::{JsonEvent, WireEvent};
use eddy_core::{ProducerRef, Registry};
use serde::Deserialize;
use tokio::task::JoinSet;

/// Options of `eddy send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Node's binary-protocol address.
    #[arg(long, default_value = "127.0.0.1:7070")]
    addr: String,
    /// Events per batch.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Batches in flight at once.
    #[arg(long, default_value_t = 8)]
    pipeline: usize,
    /// Send over HTTP to this node address (`host:port` of its `http_addr`)
    /// instead of the binary protocol. Both work for every kind the node
    /// hosts.
    #[arg(long)]
    http: Option<String>,
    #[command(flatten)]
    token: crate::TokenArg,
    /// NDJSON file; `-` or nothing reads stdin.
    file: Option<PathBuf>,
    #[command(flatten)]
    tls: crate::tls_args::TlsArgs,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    kind: String,
    key: String,
    event: serde_json::Value,
    producer: Option<String>,
    seq: Option<u64>,
}

/// A line ready to send: encoded here, or JSON for the node to encode.
enum Parsed {
    Encoded(WireEvent),
    Json(JsonEvent),
}

fn parse(registry: &Registry, text: &str) -> Result<Parsed, String> {
    let line: Line = serde_json::from_str(text).map_err(|err| err.to_string())?;
    let producer = match (line.producer, line.seq) {
        (Some(producer), Some(seq)) => Some(ProducerRef { producer, seq }),
        (None, None) => None,
        _ => return Err("`producer` and `seq` go together".into()),
    };
    let Some(kind) = registry.kind_id(&line.kind) else {
        // Not a kind this binary links: the node knows whether it hosts it.
        return Ok(Parsed::Json(JsonEvent {
            kind: line.kind.into(),
            key: line.key.into(),
            event_json: line.event.to_string(),
            producer,
        }));
    };
    let payload = registry
        .event_from_json(kind, &line.event.to_string())
        .map_err(|err| format!("event: {err}"))?;
    Ok(Parsed::Encoded(WireEvent {
        kind: line.kind.into(),
        key: line.key.into(),
        payload,
        producer,
    }))
}

/// A batch of one of the two forms.
enum Batch {
    Encoded(Vec<WireEvent>),
    Json(Vec<JsonEvent>),
}

impl Batch {
    fn len(&self) -> usize {
        match self {
            Batch::Encoded(events) => events.len(),
            Batch::Json(events) => events.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The input's non-blank lines with their numbers (from 1). A read error
/// ends them: it is reported and recorded in `failed`.
fn numbered_lines<'a>(
    reader: Box<dyn BufRead + 'a>,
    failed: &'a std::cell::Cell<bool>,
) -> impl Iterator<Item = (usize, String)> + 'a {
    reader
        .lines()
        .enumerate()
        .map_while(move |(index, line)| match line {
            Ok(line) => Some((index + 1, line)),
            Err(err) => {
                eprintln!("error: reading input: {err}");
                failed.set(true);
                None
            }
        })
        .filter(|(_, line)| !line.trim().is_empty())
}

/// Sends a batch, waiting out overload a bounded number of times.
async fn send_batch(client: &Client, batch: Batch) -> Result<Ack, ClientError> {
    let mut attempts = 0;
    loop {
        let answer = match &batch {
            Batch::Encoded(events) => client.submit(events).await,
            Batch::Json(events) => client.submit_json(events).await,
        };
        match answer {
            Err(ClientError::Overloaded { retry_after_ms }) if attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(retry_after_ms)).await;
            }
            other => return other,
        }
    }
}

/// What happened to the input.
#[derive(Default)]
struct Totals {
    sent: u64,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    bad: u64,
    failed: u64,
}

impl Totals {
    /// Prints the summary line; success if nothing was bad, refused or failed.
    fn report(self) -> ExitCode {
        let Totals {
            sent,
            accepted,
            duplicates,
            rejected,
            bad,
            failed,
        } = self;
        println!(
            "sent {sent} events: {accepted} accepted, {duplicates} duplicates, {rejected} rejected; {bad} bad lines, {failed} failed batches"
        );
        if bad + rejected + failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    /// Counts the answer to the batch of input lines `lines`.
    fn tally(
        &mut self,
        result: Result<(Vec<usize>, Result<Ack, ClientError>), tokio::task::JoinError>,
    ) {
        match result {
            Ok((lines, Ok(ack))) => {
                self.accepted += u64::from(ack.accepted);
                self.duplicates += u64::from(ack.duplicates);
                self.rejected += ack.rejected.len() as u64;
                for (index, reason) in ack.rejected {
                    let line = lines.get(index as usize).copied().unwrap_or(0);
                    eprintln!("line {line}: rejected: {reason}");
                }
            }
            Ok((lines, Err(err))) => {
                self.failed += 1;
                let first = lines.first().copied().unwrap_or(0);
                let last = lines.last().copied().unwrap_or(0);
                eprintln!("error: lines {first}-{last}: batch failed: {err}");
            }
            Err(err) => {
                self.failed += 1;
                eprintln!("error: {err}");
            }
        }
    }
}

/// Runs `eddy send`.
pub fn run(args: SendArgs, registry: Registry) -> ExitCode {
    let reader: Box<dyn BufRead> = match args.file.as_deref() {
        None => Box::new(std::io::stdin().lock()),
        Some(path) if path.as_os_str() == "-" => Box::new(std::io::stdin().lock()),
        Some(path) => match std::fs::File::open(path) {
            Ok(file) => Box::new(std::io::BufReader::new(file)),
            Err(err) => {
                eprintln!("error: cannot read {}: {err}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    if let Some(addr) = args.http.clone() {
        return send_http(&addr, args.batch.max(1), (&args.tls, &args.token), reader);
    }
    let Some(runtime) = crate::runtime() else {
        return ExitCode::FAILURE;
    };
    let config = match args.tls.client_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let client =
            match Client::connect_with(&args.addr, config.with_token(args.token.token.clone()))
                .await
            {
                Ok(client) => std::sync::Arc::new(client),
                Err(err) => {
                    eprintln!(
                        "error: {}",
                        crate::connect_error(&args.addr, &err, "--addr")
                    );
                    return ExitCode::FAILURE;
                }
            };
        let mut totals = Totals::default();
        let mut in_flight = JoinSet::new();
        // One batch per form, with the input line of each event; a key's
        // kind, so all its events, keep to one form.
        let (mut encoded, mut json) = (Vec::new(), Vec::new());
        let (mut encoded_lines, mut json_lines) = (Vec::new(), Vec::new());
        let size = args.batch.max(1);
        let read_failed = std::cell::Cell::new(false);
        for (number, line) in numbered_lines(reader, &read_failed) {
            let full = match parse(&registry, &line) {
                Ok(Parsed::Encoded(event)) => {
                    encoded.push(event);
                    encoded_lines.push(number);
                    (encoded.len() >= size).then(|| {
                        let batch = Batch::Encoded(std::mem::take(&mut encoded));
                        (batch, std::mem::take(&mut encoded_lines))
                    })
                }
                Ok(Parsed::Json(event)) => {
                    json.push(event);
                    json_lines.push(number);
                    (json.len() >= size).then(|| {
                        let batch = Batch::Json(std::mem::take(&mut json));
                        (batch, std::mem::take(&mut json_lines))
                    })
                }
                Err(err) => {
                    totals.bad += 1;
                    eprintln!("line {number}: {err}");
                    None
                }
            };
            if let Some((full, lines)) = full {
                totals.sent += full.len() as u64;
                let client = client.clone();
                in_flight.spawn(async move { (lines, send_batch(&client, full).await) });
                while in_flight.len() >= args.pipeline.max(1) {
                    if let Some(result) = in_flight.join_next().await {
                        totals.tally(result);
                    }
                }
            }
        }
        for (rest, lines) in [
            (Batch::Encoded(encoded), encoded_lines),
            (Batch::Json(json), json_lines),
        ] {
            if !rest.is_empty() {
                totals.sent += rest.len() as u64;
                let client = client.clone();
                in_flight.spawn(async move { (lines, send_batch(&client, rest).await) });
            }
        }
        while let Some(result) = in_flight.join_next().await {
            totals.tally(result);
        }
        totals.failed += u64::from(read_failed.get());
        totals.report()
    })
}

/// `eddy send --http`: the lines in batches of `batch`, as NDJSON, one
/// request at a time, each retried while the node answers 429 or 503.
fn send_http(
    addr: &str,
    batch: usize,
    (tls, token): (&crate::tls_args::TlsArgs, &crate::TokenArg),
    reader: Box<dyn BufRead>,
) -> ExitCode {
    let agent = match tls.agent(Duration::from_secs(30), false) {
        Ok(agent) => agent,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let bearer = token.bearer();
    let url = format!("{}://{addr}/v1/events", tls.scheme());
    let mut totals = Totals::default();
    // (line number, line) of the batch being filled.
    let mut lines: Vec<(usize, String)> = Vec::with_capacity(batch);
    let post = |lines: &mut Vec<(usize, String)>, totals: &mut Totals| {
        if lines.is_empty() {
            return;
        }
        totals.sent += lines.len() as u64;
        let body = lines
            .iter()
            .map(|(_, line)| line.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let numbers: Vec<usize> = lines.drain(..).map(|(number, _)| number).collect();
        let mut attempts = 0;
        loop {
            let mut request = agent
                .post(&url)
                .header("content-type", "application/x-ndjson");
            if let Some(bearer) = &bearer {
                request = request.header("authorization", bearer);
            }
            let answer = request.send(&body);
            let (status, text) = match answer {
                Ok(mut response) => (
                    response.status().as_u16(),
                    response.body_mut().read_to_string().unwrap_or_default(),
                ),
                Err(err) => (0, err.to_string()),
            };
            let reply: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let count = |key: &str| reply[key].as_u64().unwrap_or(0);
            match status {
                200 | 422 => {
                    totals.accepted += count("accepted");
                    totals.duplicates += count("duplicates");
                    for rejected in reply["rejected"].as_array().into_iter().flatten() {
                        totals.rejected += 1;
                        let index = rejected["index"].as_u64().unwrap_or(0) as usize;
                        let line = numbers.get(index).copied().unwrap_or(0);
                        eprintln!("line {line}: {}", rejected["error"]);
                    }
                }
                429 | 503 | 0 if attempts < 50 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                _ => {
                    totals.failed += 1;
                    let first = numbers.first().copied().unwrap_or(0);
                    let last = numbers.last().copied().unwrap_or(0);
                    eprintln!("error: lines {first}-{last}: {status} {text}");
                }
            }
            return;
        }
    };
    let read_failed = std::cell::Cell::new(false);
    for numbered in numbered_lines(reader, &read_failed) {
        lines.push(numbered);
        if lines.len() >= batch {
            post(&mut lines, &mut totals);
        }
    }
    post(&mut lines, &mut totals);
    totals.failed += u64::from(read_failed.get());
    totals.report()
}
