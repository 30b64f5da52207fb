//! The command line: the only home of clap.
//!
//! Parses arguments, loads and validates the whole configuration (including every password
//! reference) before the first connection, runs the command and maps the outcome to a documented
//! exit code (docs/exit-codes.md).

use crate::config;
use crate::engine::EngineOptions;
use crate::error::exit;
use crate::progress::Progress;
use crate::runner;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Move every mailbox of a domain from an old IMAP server to a new one: incremental,
/// exactly-once, byte for byte.
#[derive(Parser, Debug)]
#[command(name = "imapshift", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). IMAPSHIFT_LOG=filter overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors; no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Copy every folder and message of every user that is not on the new server yet.
    ///
    /// Run it as often as you like before the cutover: each run copies only what is new. The old
    /// server is only read (EXAMINE, BODY.PEEK); on the new server only folders are created and
    /// messages appended.
    Sync(SyncArgs),
    /// Show what the state store knows per user: last run, folders, mapped messages, pending
    /// intents. Contacts no server.
    Status(StatusArgs),
    /// Watch the MX records of the domains on each nameserver directly (like `dig @ns MX`, no
    /// cache), print a table and one line per change; with --until, exit 0 once every
    /// nameserver serves the target for every domain.
    WatchMx(WatchMxArgs),
    /// Check before the cutover and print a pass/warn/fail list: every user logs in on both
    /// servers, capabilities, the folder plan, the new quota against the old mailbox, the MX
    /// TTL, the parking target refusing SMTP and the new target accepting it. Changes nothing.
    Preflight(ReportArgs),
    /// The downtime window, unattended: wait until every nameserver serves the parking MX, wait
    /// the largest TTL seen, run the final delta sync for all users, verify, then print the next
    /// step (point the MX at the new server); with --follow, keep carrying mail that still
    /// reaches the old server. Exits 0 only when the verification passed.
    Cutover(CutoverArgs),
    /// Show, per user, where every old folder goes on the new server and why (namespace
    /// prefixes and delimiters, special use, collisions, earlier runs), and which folders are
    /// not migrated (other users' and shared namespaces, [filters]). Logs in; changes nothing.
    Folders(ReportArgs),
    /// Compare old and new for every user and folder by content (not by imapshift's records):
    /// messages missing, flags changed, duplicates, folders and subscriptions; mail only on the
    /// new server is listed, not counted. Exit 0 only when nothing is missing or changed.
    Verify(VerifyArgs),
}

/// What `folders` and `preflight` take: both log in as the users, report, and change nothing.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The configuration file (see docs/configuration.md).
    #[arg(short, long, default_value = "imapshift.toml", value_name = "FILE")]
    pub config: PathBuf,
    /// The report (the folder map, the checks) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Only this user (old login); repeat for several.
    #[arg(short, long = "user", value_name = "LOGIN")]
    pub users: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The configuration file (see docs/configuration.md).
    #[arg(short, long, default_value = "imapshift.toml", value_name = "FILE")]
    pub config: PathBuf,
    /// Also compare a SHA-256 of every whole message (fetches every body; slower).
    #[arg(long)]
    pub deep: bool,
    /// The full report as JSON on stdout (every difference).
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Verify only this user (old login); repeat for several.
    #[arg(short, long = "user", value_name = "LOGIN")]
    pub users: Vec<String>,
    /// Verify part K of N of the users (and read that shard's last run report).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<config::Shard>,
}

#[derive(clap::Args, Debug)]
pub struct CutoverArgs {
    /// The configuration file, with an [mx] table (see docs/cutover.md).
    #[arg(short, long, default_value = "imapshift.toml", value_name = "FILE")]
    pub config: PathBuf,
    /// After the verification, keep syncing for this long (e.g. 30m, 2h, 90s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub follow: Option<std::time::Duration>,
    /// Time between follow passes (a pass also starts when IDLE reports new mail).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2m")]
    pub follow_interval: std::time::Duration,
    /// Time between DNS polls while waiting for the parking MX.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    pub dns_interval: std::time::Duration,
    /// Give up waiting for the parking MX after this long (exit 5); default: wait forever.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_wait: Option<std::time::Duration>,
    /// The cutover report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// This machine's part K of N of the users, as its pre-syncs ran (docs/sharding.md).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<config::Shard>,
}

/// `90`, `90s`, `2m`, `1h30m`, `1.5h`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("\"{s}\" is not a duration: write e.g. 90s, 2m, 30m, 1h30m");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(v) = t.parse::<f64>() {
        return (v.is_finite() && v >= 0.0)
            .then(|| std::time::Duration::from_secs_f64(v))
            .ok_or_else(bad);
    }
    let mut total = 0.0f64;
    let mut num = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86_400.0,
            _ => return Err(bad()),
        };
        let v: f64 = num.parse().map_err(|_| bad())?;
        total += v * unit;
        num.clear();
    }
    if !num.is_empty() || !(0.0..=366.0 * 86_400.0).contains(&total) {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

#[derive(clap::Args, Debug)]
pub struct WatchMxArgs {
    /// A domain to watch; repeat for several (default: [mx].domains of --config).
    #[arg(long = "domain", value_name = "DOMAIN")]
    pub domains: Vec<String>,
    /// A nameserver to ask, IP[:PORT] (port 53 by default); repeat for several (default:
    /// [mx].nameservers of --config, else the domains' NS records).
    #[arg(long = "nameserver", value_name = "IP[:PORT]")]
    pub nameservers: Vec<String>,
    /// Seconds between polls.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub interval: f64,
    /// Exit 0 once every nameserver serves this MX target (and only it) for every domain.
    #[arg(long, value_name = "TARGET")]
    pub until: Option<String>,
    /// Give up after this many seconds (exit 5); default: wait forever.
    #[arg(long, value_name = "SECS")]
    pub max_wait: Option<f64>,
    /// Stop after this many polls (exit 0 without --until, 5 with it if not reached).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Seconds to wait for each answer.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub timeout: f64,
    /// JSON Lines events on stdout instead of the table (docs/cutover.md).
    #[arg(long)]
    pub json: bool,
    /// Read [mx] from this configuration file.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The resolver that finds the domains' NS records when no nameserver is named
    /// (default: [mx].resolver, else /etc/resolv.conf).
    #[arg(long, value_name = "IP[:PORT]")]
    pub resolver: Option<String>,
    /// The port of discovered nameservers.
    #[arg(long, value_name = "PORT", default_value_t = 53)]
    pub ns_port: u16,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The configuration file (see docs/configuration.md).
    #[arg(short, long, default_value = "imapshift.toml", value_name = "FILE")]
    pub config: PathBuf,
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct SyncArgs {
    /// The configuration file (see docs/configuration.md).
    #[arg(short, long, default_value = "imapshift.toml", value_name = "FILE")]
    pub config: PathBuf,
    /// JSON Lines on stdout: progress events, then the run report as the last line
    /// (docs/events.md); logs stay on stderr.
    #[arg(long)]
    pub json: bool,
    /// Show what would be done (folders to create, messages to copy) without changing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Users synced at the same time (overrides [sync].jobs).
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: Option<u16>,
    /// Sync only this user (old login); repeat for several.
    #[arg(short, long = "user", value_name = "LOGIN")]
    pub users: Vec<String>,
    /// Seconds between progress lines when stderr is not a terminal (on a terminal, bars), and
    /// between `progress` events with --json.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub progress_interval: f64,
    /// Take part K of N of the users (stable by login), e.g. one shard per machine or per
    /// Kubernetes Indexed Job; the shard keeps its state in state_dir/shard-K-of-N.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<config::Shard>,
    /// The final delta at cutover: as a normal sync, and deletions are propagated when
    /// [sync].propagate_deletes_on_final is true.
    #[arg(long)]
    pub r#final: bool,
    /// Delete the new server's copies of messages that were expunged on the old server (only
    /// copies imapshift made; mail that exists only on the new server is never touched).
    #[arg(long)]
    pub propagate_deletes: bool,
    /// Accept an old folder whose UIDVALIDITY changed even when few of its messages match the
    /// earlier copies (copies what is not recognised; deletes nothing).
    #[arg(long)]
    pub force_remap: bool,
}

fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet {
        "warn"
    } else {
        match verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    // sled logs its own I/O errors (a full disk) in Rust debug form, after which the state
    // store's error says the same in words (state/mod.rs): its lines only with IMAPSHIFT_LOG.
    let filter = EnvFilter::try_from_env("IMAPSHIFT_LOG").unwrap_or_else(|_| {
        EnvFilter::new(default).add_directive("sled=off".parse().expect("static directive"))
    });
    // async-imap traces every command it sends, LOGIN with its password included: never let
    // its log through, whatever the filter asks for. Our own IMAP trace shows no secrets.
    let filter = filter.add_directive("async_imap=off".parse().expect("static directive"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    // Everything written about a migration is owner-only, whatever the admin's umask.
    crate::state::files::restrict_umask();
    crate::secret::harden_process();
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    match cli.command {
        Command::Sync(args) => sync(args, cli.quiet),
        Command::Status(args) => status(args),
        Command::WatchMx(args) => watch_mx(args),
        Command::Preflight(args) => preflight(args),
        Command::Cutover(args) => cutover(args, cli.quiet),
        Command::Verify(args) => verify(args),
        Command::Folders(args) => folders(args),
    }
}

fn cutover(args: CutoverArgs, quiet: bool) -> i32 {
    let cfg = match load_users(&args.config, args.shard, &[]) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if args.shard.is_none() {
        // Pre-synced in shards: without --shard the final sync would find no UID maps and
        // rebuild them all by content inside the downtime window.
        let sharded = std::fs::read_dir(&cfg.state_dir)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("shard-"))
            })
            .unwrap_or(false);
        if sharded {
            eprintln!(
                "imapshift: {} holds shard state (shard-K-of-N): run the cutover with --shard K/N on each machine, as the pre-syncs ran",
                cfg.state_dir.display()
            );
            return exit::CONFIG;
        }
    }
    if cfg.mx.as_ref().is_none_or(|m| m.parking_target.is_none()) {
        eprintln!(
            "imapshift: {}: cutover needs an [mx] table with domains and parking_target (docs/cutover.md)",
            cfg.path.display()
        );
        return exit::CONFIG;
    }
    if let Some(days) = cfg.filters.min_age_days {
        // Mail younger than that would stay on the old server, which is switched off after the
        // cutover: refused, not silently left behind.
        eprintln!(
            "imapshift: {}: [filters].min_age_days = {days} leaves the last {days} days of mail on the old server, and the cutover is the last sync before the old server is switched off: remove min_age_days for the cutover (docs/cutover.md)",
            cfg.path.display()
        );
        return exit::CONFIG;
    }
    let _lock = match lock_state(&cfg, "cutover") {
        Ok(l) => l,
        Err(code) => return code,
    };
    let final_opts = engine_options(&cfg, false, cfg.sync.propagate_deletes_on_final, false);
    // Follow passes never delete: mail only arrives on the old server now.
    let follow_opts = engine_options(&cfg, false, false, false);
    let progress = Progress::new(quiet, std::time::Duration::from_secs(5), false);
    let Some(rt) = runtime() else {
        return exit::FATAL;
    };
    stop_on_signals(&rt);
    let co = crate::cutover::CutoverOptions {
        dns_interval: args.dns_interval.max(std::time::Duration::from_millis(100)),
        max_wait: args.max_wait,
        follow: args.follow,
        follow_interval: args
            .follow_interval
            .max(std::time::Duration::from_millis(100)),
        shard: args.shard,
    };
    let c = crate::cutover::Cutover {
        cfg: &cfg,
        sync_opts: &final_opts,
        follow_opts: &follow_opts,
        progress: &progress,
        options: &co,
    };
    let report = match rt.block_on(crate::cutover::run(&c)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("imapshift: {e}");
            return runner::exit_code_for(&e);
        }
    };
    print_result(args.json, &report, || crate::cutover::render(&report));
    report.exit_code
}

fn verify(args: VerifyArgs) -> i32 {
    let cfg = match load_users(&args.config, args.shard, &args.users) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Check the report's folder before any connection: a typo must not cost a whole run.
    if let Some(p) = &args.html {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
        if dir.is_some_and(|d| !d.is_dir()) {
            eprintln!(
                "imapshift: --html {}: the folder does not exist",
                p.display()
            );
            return exit::CONFIG;
        }
    }
    let _lock = match lock_state(&cfg, "verify") {
        Ok(l) => l,
        Err(code) => return code,
    };
    let Some(rt) = runtime() else {
        return exit::FATAL;
    };
    let verdict = rt.block_on(crate::verify::verify(
        &cfg,
        &crate::verify::VerifyOptions::now(args.deep),
    ));
    if let Some(p) = &args.html {
        let html = crate::report_html::render(&verdict);
        if let Err(e) = crate::state::files::write_private(p, html.as_bytes()) {
            eprintln!("imapshift: cannot write {}: {e}", p.display());
            return exit::FATAL;
        }
        tracing::info!("HTML report written to {}", p.display());
    }
    print_result(args.json, &verdict, || crate::verify::render(&verdict));
    verdict.exit_code()
}

fn folders(args: ReportArgs) -> i32 {
    let (cfg, rt) = match users_and_runtime(&args.config, &args.users) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let _lock = match lock_state(&cfg, "folders") {
        Ok(l) => l,
        Err(code) => return code,
    };
    let users = rt.block_on(crate::folder_map::run(&cfg));
    print_result(args.json, &users, || crate::folder_map::render(&users));
    crate::folder_map::exit_code(&users)
}

fn preflight(args: ReportArgs) -> i32 {
    let (cfg, rt) = match users_and_runtime(&args.config, &args.users) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let checks = rt.block_on(crate::preflight::run(&cfg));
    print_result(args.json, &checks, || crate::preflight::render(&checks));
    crate::preflight::exit_code(&checks)
}

/// Takes the state directory's lock for `command` (one run per state directory,
/// `state::lock`). `Err` holds the exit code, after the message naming the run that holds it.
fn lock_state(cfg: &config::Config, command: &str) -> Result<crate::state::lock::StateLock, i32> {
    let made = crate::state::files::private_dir(&cfg.state_dir).map_err(|e| {
        if crate::state::files::is_disk_full(&e) {
            eprintln!(
                "imapshift: cannot create the state directory {}: {}",
                cfg.state_dir.display(),
                crate::state::files::disk_full_text(&cfg.state_dir)
            );
            return exit::FATAL;
        }
        eprintln!(
            "imapshift: cannot create the state directory {}: {e} (set state_dir to a writable folder)",
            cfg.state_dir.display()
        );
        exit::CONFIG
    })?;
    if let Some(w) = made {
        tracing::warn!("{w}");
    }
    let lock = crate::state::lock::StateLock::acquire(&cfg.state_dir, command).map_err(|e| {
        eprintln!("imapshift: {e}");
        exit::FATAL
    })?;
    if let Some(was) = &lock.stale {
        tracing::warn!(
            "the last run on {} ({was}) did not end normally (killed or crashed): its journal is resolved now",
            cfg.state_dir.display()
        );
    }
    Ok(lock)
}

/// The configuration with the `--user`s a read-only command takes, and a runtime to run it.
fn users_and_runtime(
    path: &std::path::Path,
    users: &[String],
) -> Result<(config::Config, tokio::runtime::Runtime), i32> {
    let cfg = load_users(path, None, users)?;
    let rt = runtime().ok_or(exit::FATAL)?;
    Ok((cfg, rt))
}

/// A command's result on stdout: pretty JSON with `--json`, else the text for people.
fn print_result<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        print!("{}", text());
    }
}

/// Loads the configuration with the users a command takes (its shard, its `--user`s): only
/// theirs get their password references resolved. Checks every `--user` exists and gives a
/// shard its own state directory. `Err` holds the exit code, after the message.
fn load_users(
    path: &std::path::Path,
    shard: Option<config::Shard>,
    only: &[String],
) -> Result<config::Config, i32> {
    let keep = |login: &str| {
        shard.is_none_or(|s| s.takes(login)) && (only.is_empty() || only.iter().any(|u| u == login))
    };
    let mut cfg = config::load_selected(path, &keep).map_err(|e| {
        eprintln!("imapshift: {e}");
        exit::CONFIG
    })?;
    if let Some(name) = only
        .iter()
        .find(|n| !cfg.users.iter().any(|u| &u.old_login == *n))
    {
        let why = if shard.is_some() {
            "is not in this shard's users"
        } else {
            "is not in the users list"
        };
        eprintln!(
            "imapshift: --user \"{name}\" {why} ({}): name an old login from the users list",
            cfg.path.display()
        );
        return Err(exit::CONFIG);
    }
    if let Some(s) = shard {
        s.apply(&mut cfg);
        if cfg.users.is_empty() {
            eprintln!(
                "imapshift: --shard {}/{}: this shard takes none of the {} users of {}: use fewer shards (N at most the number of users), or check the users list",
                s.k,
                s.n,
                cfg.users_total,
                cfg.path.display()
            );
            return Err(exit::CONFIG);
        }
        tracing::info!(
            "shard {}/{}: {} of {} users",
            s.k,
            s.n,
            cfg.users.len(),
            cfg.users_total
        );
    }
    Ok(cfg)
}

/// The async runtime of a command; `None` (after saying why) if it cannot start.
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("imapshift: cannot start the async runtime: {e}");
            None
        }
    }
}

/// Ctrl-C and SIGTERM for the commands that change the new server (sync, cutover).
fn stop_on_signals(rt: &tokio::runtime::Runtime) {
    // First Ctrl-C (or SIGTERM): stop cleanly (in-flight batches finish and are committed, the
    // state is flushed, the report written, exit 130). Second: abort at once; the journal makes
    // the next run exactly-once anyway.
    rt.spawn(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        for n in 0.. {
            tokio::select! {
                r = tokio::signal::ctrl_c() => { if r.is_err() { return; } }
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
            if n == 0 {
                eprintln!("imapshift: stopping cleanly after the messages in flight (press Ctrl-C again to abort)");
                crate::failpoint::request_stop();
            } else {
                eprintln!("imapshift: aborted; the next run resumes exactly where this one stopped");
                std::process::exit(exit::INTERRUPTED);
            }
        }
    });
}

/// Seconds from the command line, checked.
fn secs(v: f64, what: &str, min: f64) -> Result<std::time::Duration, String> {
    if !(min..=30.0 * 86_400.0).contains(&v) {
        return Err(format!("{what} must be between {min} and 2592000 seconds"));
    }
    Ok(std::time::Duration::from_secs_f64(v))
}

/// The watcher's domains and nameservers: `--domain` and `--nameserver` (every given
/// nameserver for every domain), else [mx] of the configuration (each domain its own
/// nameservers), else the domains' NS records.
async fn watch_spec(
    args: &WatchMxArgs,
    mx: Option<&config::MxConfig>,
) -> Result<crate::mx::WatchSpec, String> {
    let interval = secs(args.interval, "--interval", 0.1)?;
    let timeout = secs(args.timeout, "--timeout", 0.1)?;
    let mut m = mx.cloned().unwrap_or_default();
    if !args.domains.is_empty() {
        m.domains = Vec::new();
        for d in &args.domains {
            m.domains
                .push(crate::dns::parse_domain(d).map_err(|e| format!("--domain: {e}"))?);
        }
    }
    if m.domains.is_empty() {
        return Err("no domain to watch: give --domain or --config with an [mx] table".into());
    }
    if !args.nameservers.is_empty() {
        m.domain_nameservers.clear();
        m.nameserver_labels = args
            .nameservers
            .iter()
            .map(|n| n.trim().to_string())
            .collect();
        m.nameservers = Vec::new();
        for n in &args.nameservers {
            m.nameservers.push(
                crate::dns::parse_nameserver(n, 53).map_err(|e| format!("--nameserver: {e}"))?,
            );
        }
    }
    if let Some(r) = &args.resolver {
        m.resolver =
            Some(crate::dns::parse_nameserver(r, 53).map_err(|e| format!("--resolver: {e}"))?);
    }
    crate::mx::spec_with_port(&m, args.ns_port, interval, timeout).await
}

/// Ctrl-C and SIGTERM end a watch: the first stops it (exit 130), a second one at once.
fn stop_watch_on_signals(rt: &tokio::runtime::Runtime) {
    use tokio::signal::unix::{signal, SignalKind};
    rt.spawn(async {
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        for n in 0.. {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if n > 0 {
                std::process::exit(exit::INTERRUPTED);
            }
            crate::failpoint::request_stop();
        }
    });
}

/// What `watch-mx` prints and records as the watch goes.
struct WatchOutput {
    json: bool,
    /// With --config: the TTL log of its state directory.
    ttl_log: Option<crate::mx::ttl::TtlLog>,
}

impl WatchOutput {
    fn tell(
        &mut self,
        e: &crate::mx::Event,
        spec: &crate::mx::WatchSpec,
        snap: &crate::mx::Snapshot,
    ) {
        use crate::mx::Event;
        if let (Event::MxPolled { .. }, Some(log)) = (e, &mut self.ttl_log) {
            if let Err(err) = log.record("watch-mx", snap) {
                // Said once; the watch goes on without recording.
                eprintln!("imapshift: {err}");
                self.ttl_log = None;
            }
        }
        match e {
            Event::MxPolled { .. } => {}
            _ if self.json => println!("{}", serde_json::to_string(e).unwrap_or_default()),
            Event::MxState { .. } => {
                // The first poll: one table, printed once (on its first pair).
                if first_pair(e, spec) {
                    println!(
                        "{}  first poll of {} nameserver(s)",
                        crate::timefmt::rfc3339(snap.unix),
                        spec.nameserver_count()
                    );
                    print!("{}", crate::mx::render_table(snap));
                }
            }
            Event::MxUnreachable { .. } => {
                if let Some(line) = crate::mx::event_line(e) {
                    eprintln!("imapshift: {line}");
                }
            }
            _ => {
                if let Some(line) = crate::mx::event_line(e) {
                    println!("{line}");
                }
            }
        }
    }
}

fn watch_mx(args: WatchMxArgs) -> i32 {
    // No user is taken and no password reference resolved for watching DNS.
    let cfg = match &args.config {
        None => None,
        Some(path) => match config::load_without_secrets(path) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("imapshift: {e}");
                return exit::CONFIG;
            }
        },
    };
    let max_wait = match args
        .max_wait
        .map(|v| secs(v, "--max-wait", 0.0))
        .transpose()
    {
        Ok(m) => m,
        Err(e) => {
            eprintln!("imapshift: {e}");
            return exit::CONFIG;
        }
    };
    if let Some(t) = &args.until {
        if let Err(e) = crate::dns::parse_domain(t) {
            eprintln!("imapshift: --until: {e}");
            return exit::CONFIG;
        }
    }
    // With --config, the TTLs seen are remembered in its state directory (docs/cutover.md).
    let ttl_log = match cfg
        .as_ref()
        .map(|c| crate::mx::ttl::TtlLog::open(&c.state_dir))
    {
        None => None,
        Some(Ok(log)) => Some(log),
        Some(Err(e)) => {
            eprintln!("imapshift: {e}");
            return exit::FATAL;
        }
    };
    let Some(rt) = runtime() else {
        return exit::FATAL;
    };
    stop_watch_on_signals(&rt);
    rt.block_on(async {
        let spec = match watch_spec(&args, cfg.as_ref().and_then(|c| c.mx.as_ref())).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("imapshift: {e}");
                return exit::CONFIG;
            }
        };
        let mut out = WatchOutput {
            json: args.json,
            ttl_log,
        };
        let end = crate::mx::watch(
            &spec,
            args.until.as_deref(),
            max_wait,
            args.count,
            &mut |e, spec, snap| out.tell(e, spec, snap),
        )
        .await;
        if end.interrupted {
            return exit::INTERRUPTED;
        }
        if args.until.is_some() && !end.reached {
            return exit::NOT_PROPAGATED;
        }
        exit::OK
    })
}

/// Whether an `MxState` event is the first pair of the table.
fn first_pair(e: &crate::mx::Event, spec: &crate::mx::WatchSpec) -> bool {
    let first = spec.pairs().next();
    matches!((e, first), (crate::mx::Event::MxState { nameserver, domain, .. }, Some((d, ns)))
        if *nameserver == ns.label && domain == d)
}

/// The engine's options for a run of `cfg`: the memory plan, rate limits and tuning.
fn engine_options(
    cfg: &config::Config,
    dry_run: bool,
    propagate_deletes: bool,
    force_remap: bool,
) -> EngineOptions {
    let memory = crate::engine::MemoryPlan::new(
        cfg.sync.memory_budget,
        cfg.sync.batch_bytes,
        cfg.sync.jobs.min(cfg.users.len()),
    );
    if memory.over_by > 0 {
        tracing::warn!(
            "[sync] memory_budget ({} MiB) is small for {} parallel users: expect about {} MiB \
             more; raise memory_budget or lower jobs",
            cfg.sync.memory_budget >> 20,
            cfg.sync.jobs.min(cfg.users.len()),
            memory.over_by.div_ceil(1 << 20)
        );
    }
    tracing::debug!(
        "memory: {} KiB for bodies in flight, batches of up to {} KiB",
        memory.bodies >> 10,
        memory.batch_bytes >> 10
    );
    EngineOptions {
        batch_bytes: memory.batch_bytes,
        batch_messages: cfg.sync.batch_messages,
        dry_run,
        propagate_deletes,
        force_remap,
        filters: cfg.filters.clone(),
        folder_rules: cfg.folder_rules.clone(),
        memory: Some(std::sync::Arc::new(crate::engine::MemoryBudget::new(
            memory.bodies,
        ))),
        old_rate: crate::ratelimit::RateLimiter::new(
            cfg.old.max_messages_per_sec,
            cfg.old.max_bytes_per_sec,
        )
        .map(std::sync::Arc::new),
        new_rate: crate::ratelimit::RateLimiter::new(
            cfg.new.max_messages_per_sec,
            cfg.new.max_bytes_per_sec,
        )
        .map(std::sync::Arc::new),
        connections_per_user: cfg.sync.connections_per_user,
        as_of_unix: crate::timefmt::now_unix(),
    }
}

fn sync(args: SyncArgs, quiet: bool) -> i32 {
    let mut cfg = match load_users(&args.config, args.shard, &args.users) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(j) = args.jobs {
        cfg.sync.jobs = j as usize;
    }
    let opts = engine_options(
        &cfg,
        args.dry_run,
        args.propagate_deletes || (args.r#final && cfg.sync.propagate_deletes_on_final),
        args.force_remap,
    );
    if args.r#final {
        tracing::info!(
            "final delta sync (deletions {})",
            if opts.propagate_deletes {
                "propagated"
            } else {
                "not propagated"
            }
        );
    }
    if !(0.0..=86_400.0).contains(&args.progress_interval) {
        eprintln!("imapshift: --progress-interval must be between 0 and 86400 seconds");
        return exit::CONFIG;
    }
    let _lock = match lock_state(&cfg, "sync") {
        Ok(l) => l,
        Err(code) => return code,
    };
    let progress = Progress::new(
        quiet,
        std::time::Duration::from_secs_f64(args.progress_interval),
        args.json,
    );
    let Some(rt) = runtime() else {
        return exit::FATAL;
    };
    stop_on_signals(&rt);
    let report = match rt.block_on(runner::run_sync(&cfg, &opts, &progress, &args.users)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("imapshift: {e}");
            return runner::exit_code_for(&e);
        }
    };
    // With --json the report is the last event line (`"event": "summary"`).
    if !progress.finish_run(&report) {
        eprintln!("imapshift: stopped: the --json reader did not take the final report within {}s of the stop request", crate::progress::FINAL_WAIT_AFTER_STOP.as_secs());
        return exit::INTERRUPTED;
    }
    if !args.json {
        print!("{}", runner::render_summary(&report));
    }
    report.exit_code
}

fn status(args: StatusArgs) -> i32 {
    // It contacts no server: no password reference is resolved (no cmd: is run).
    let cfg = match config::load_without_secrets(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("imapshift: {e}");
            return exit::CONFIG;
        }
    };
    let _lock = match lock_state(&cfg, "status") {
        Ok(l) => l,
        Err(code) => return code,
    };
    match runner::status(&cfg) {
        Ok(users) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&users).unwrap_or_default()
                );
            } else {
                print!("{}", runner::render_status(&users));
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("imapshift: {e}");
            runner::exit_code_for(&e)
        }
    }
}
