//! `eddy cert`: a local certificate authority and the files a secured
//! cluster needs (docs/SECURITY.md), made with rcgen (ring).
//!
//! - `eddy cert ca --out DIR`: `ca.pem` and `ca-key.pem` (ECDSA P-256).
//! - `eddy cert node --ca DIR --name node-1 --ip 127.0.0.1 --out DIR`:
//!   `node-1.pem` and `node-1-key.pem`, signed by the CA, naming the node
//!   (as a DNS name: peers verify it) and its IP addresses (clients verify
//!   the address they dial), good for both server and client
//!   authentication (mutual TLS).
//! - `eddy cert gossip-key --out FILE`: a random 32-byte gossip key.
//! - `eddy cert local-3 --out DIR`: everything `config/secure-3/` uses.
//!
//! Private keys are written readable by their owner only and never over an
//! existing file: overwriting a CA key would orphan every node it signed.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// The CA's subject. Fixed, so a node certificate can be issued from the
/// CA key alone: the issuer name is rebuilt from it byte for byte.
const CA_NAME: &str = "eddy cluster CA";

/// `eddy cert …`
#[derive(Args)]
pub struct CertArgs {
    #[command(subcommand)]
    command: CertCommand,
}

#[derive(Subcommand)]
enum CertCommand {
    /// Create a cluster CA: DIR/ca.pem (give to every node and client) and
    /// DIR/ca-key.pem (keep offline; it signs node certificates).
    Ca {
        /// Directory to write into (created).
        #[arg(long)]
        out: PathBuf,
        /// Days the CA certificate is valid.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Create a node's certificate and key, signed by the CA in --ca.
    Node(NodeCertArgs),
    /// Write a random gossip key (64 hex digits) to a new file.
    GossipKey {
        /// File to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Everything config/secure-3/ needs: a CA, node-1..3 for 127.0.0.1,
    /// and a gossip key.
    #[command(name = "local-3")]
    Local3 {
        /// Directory to write into (config/secure-3 expects target/secure-3).
        #[arg(long, default_value = "target/secure-3")]
        out: PathBuf,
    },
}

#[derive(Args)]
struct NodeCertArgs {
    /// Directory holding ca.pem and ca-key.pem.
    #[arg(long)]
    ca: PathBuf,
    /// Node name: the certificate's common name and first DNS name (peers
    /// verify it; it must be the node's `name`).
    #[arg(long)]
    name: String,
    /// IP addresses the node is reached at (repeat); peers verify them.
    #[arg(long = "ip", required = true)]
    ips: Vec<IpAddr>,
    /// DNS names the node is reached at (repeat).
    #[arg(long = "dns")]
    dns: Vec<String>,
    /// Directory to write NAME.pem and NAME-key.pem into.
    #[arg(long)]
    out: PathBuf,
    /// Days the certificate is valid.
    #[arg(long, default_value_t = 365)]
    days: u32,
}

/// Runs `eddy cert`.
pub fn run(args: CertArgs) -> ExitCode {
    let done = match args.command {
        CertCommand::Ca { out, days } => make_ca(&out, days),
        CertCommand::Node(node) => make_node(&node),
        CertCommand::GossipKey { out } => make_gossip_key(&out),
        CertCommand::Local3 { out } => make_local_3(&out),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn make_local_3(out: &Path) -> Result<(), String> {
    make_ca(out, 3650)?;
    for name in ["node-1", "node-2", "node-3"] {
        make_node(&NodeCertArgs {
            ca: out.to_path_buf(),
            name: name.into(),
            ips: vec![IpAddr::from([127, 0, 0, 1])],
            dns: vec!["localhost".into()],
            out: out.to_path_buf(),
            days: 365,
        })?;
    }
    make_gossip_key(&out.join("gossip.key"))
}

fn validity(params: &mut CertificateParams, days: u32) {
    let today = days_since_epoch();
    // A day of slack for clocks that lag the one that signed.
    let (year, month, day) = civil_date(today - 1);
    params.not_before = rcgen::date_time_ymd(year, month, day);
    let (year, month, day) = civil_date(today + i64::from(days.max(1)));
    params.not_after = rcgen::date_time_ymd(year, month, day);
}

fn ca_params(days: Option<u32>) -> Result<CertificateParams, String> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    if let Some(days) = days {
        validity(&mut params, days);
    }
    Ok(params)
}

fn make_ca(out: &Path, days: u32) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let key = KeyPair::generate().map_err(|e| format!("CA key: {e}"))?;
    let cert = ca_params(Some(days))?
        .self_signed(&key)
        .map_err(|e| format!("CA certificate: {e}"))?;
    write_new(&out.join("ca-key.pem"), &key.serialize_pem(), true)?;
    write_new(&out.join("ca.pem"), &cert.pem(), false)?;
    println!(
        "wrote {0}/ca.pem (the cluster CA: tls_ca of every node, --ca of clients) and {0}/ca-key.pem (keep it offline)",
        out.display()
    );
    Ok(())
}

fn make_node(args: &NodeCertArgs) -> Result<(), String> {
    let key_path = args.ca.join("ca-key.pem");
    let ca_key_pem =
        std::fs::read_to_string(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)
        .map_err(|e| format!("{}: not a key: {e}", key_path.display()))?;
    let issuer = Issuer::new(ca_params(None)?, ca_key);
    let mut sans: Vec<SanType> = args.ips.iter().copied().map(SanType::IpAddress).collect();
    // The node's name first: peers verify it (a node proves it is the
    // member it claims to be), clients the IP addresses.
    let names = std::iter::once(&args.name).chain(args.dns.iter().filter(|d| **d != args.name));
    for name in names {
        sans.push(SanType::DnsName(
            name.as_str()
                .try_into()
                .map_err(|e| format!("{name}: not a DNS name: {e}"))?,
        ));
    }
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.subject_alt_names = sans;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, args.name.as_str());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, args.days);
    let key = KeyPair::generate().map_err(|e| format!("node key: {e}"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| format!("node certificate: {e}"))?;
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let cert_path = args.out.join(format!("{}.pem", args.name));
    let node_key_path = args.out.join(format!("{}-key.pem", args.name));
    write_new(&node_key_path, &key.serialize_pem(), true)?;
    write_new(&cert_path, &cert.pem(), false)?;
    println!(
        "wrote {} (tls_cert) and {} (tls_key) for {}",
        cert_path.display(),
        node_key_path.display(),
        args.name
    );
    Ok(())
}

fn make_gossip_key(out: &Path) -> Result<(), String> {
    let key = eddy_node::gossip_seal::generate_key_hex().map_err(|e| e.to_string())?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    write_new(
        out,
        &format!("# eddy gossip key: the same file on every node (gossip_key_file)\n{key}\n"),
        true,
    )?;
    println!("wrote {} (gossip_key_file)", out.display());
    Ok(())
}

/// Writes a file that must not exist yet; secrets readable by the owner only.
fn write_new(path: &Path, text: &str, secret: bool) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!(
                "{} exists; not overwritten (move it away first)",
                path.display()
            )
        } else {
            format!("{}: {e}", path.display())
        }
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn days_since_epoch() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs / 86_400).unwrap_or(0)
}

/// (year, month, day) of a day counted from 1970-01-01 (Howard Hinnant's
/// civil-from-days), so validity needs no date crate of its own.
fn civil_date(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month as u8, day as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_the_calendar() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(59), (1970, 3, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(20_787), (2026, 11, 30));
    }
}
