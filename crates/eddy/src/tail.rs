//! `eddy tail`: prints alerts as JSON lines as they are published.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use eddy_client::Client;

/// Options of `eddy tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Node's binary-protocol address.
    #[arg(long, default_value = "127.0.0.1:7070")]
    addr: String,
    /// Only alerts of this kind.
    #[arg(long)]
    kind: Option<String>,
    /// Only alerts of this key.
    #[arg(long)]
    key: Option<String>,
    /// Exit after this many alerts.
    #[arg(long)]
    count: Option<u64>,
    #[command(flatten)]
    tls: crate::tls_args::TlsArgs,
    #[command(flatten)]
    token: crate::TokenArg,
}

/// Runs `eddy tail` until Ctrl-C, the node closing, or `--count` alerts.
pub fn run(args: TailArgs) -> ExitCode {
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
                Ok(client) => client,
                Err(err) => {
                    eprintln!(
                        "error: {}",
                        crate::connect_error(&args.addr, &err, "--addr")
                    );
                    return ExitCode::FAILURE;
                }
            };
        let mut alerts = match client.subscribe(args.kind, args.key).await {
            Ok(Some(alerts)) => alerts,
            Ok(None) | Err(_) => {
                eprintln!("error: subscription failed");
                return ExitCode::FAILURE;
            }
        };
        let mut seen = 0u64;
        loop {
            let alert = tokio::select! {
                alert = alerts.recv() => alert,
                _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            };
            let Some(alert) = alert else {
                eprintln!("connection closed");
                return ExitCode::FAILURE;
            };
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{alert}").and_then(|()| out.flush()).is_err() {
                return ExitCode::SUCCESS;
            }
            seen += 1;
            if args.count.is_some_and(|count| seen >= count) {
                return ExitCode::SUCCESS;
            }
        }
    })
}
