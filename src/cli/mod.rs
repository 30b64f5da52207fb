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
    let filter =
        EnvFilter::try_from_env("IMAPSHIFT_LOG").unwrap_or_else(|_| EnvFilter::new(default));
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
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    match cli.command {
        Command::Sync(args) => sync(args, cli.quiet),
        Command::Status(args) => status(args),
    }
}

fn sync(args: SyncArgs, quiet: bool) -> i32 {
    // Only the users this run takes (its shard, --user) get their passwords resolved.
    let shard = args.shard;
    let only = &args.users;
    let keep = |login: &str| {
        shard.is_none_or(|s| s.takes(login)) && (only.is_empty() || only.iter().any(|u| u == login))
    };
    let mut cfg = match config::load_selected(&args.config, &keep) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("imapshift: {e}");
            return exit::CONFIG;
        }
    };
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
            "imapshift: --user {name:?} {why} ({}): name an old login from the users list",
            cfg.path.display()
        );
        return exit::CONFIG;
    }
    if let Some(j) = args.jobs {
        cfg.sync.jobs = j as usize;
    }
    if let Some(shard) = shard {
        shard.apply(&mut cfg);
        tracing::info!(
            "shard {}/{}: {} of {} users",
            shard.k,
            shard.n,
            cfg.users.len(),
            cfg.users_total
        );
    }
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
    let opts = EngineOptions {
        batch_bytes: memory.batch_bytes,
        batch_messages: cfg.sync.batch_messages,
        dry_run: args.dry_run,
        propagate_deletes: args.propagate_deletes
            || (args.r#final && cfg.sync.propagate_deletes_on_final),
        force_remap: args.force_remap,
        filters: cfg.filters.clone(),
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
    };
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
    let progress = Progress::new(
        quiet,
        std::time::Duration::from_secs_f64(args.progress_interval),
        args.json,
    );
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("imapshift: cannot start the async runtime: {e}");
            return exit::FATAL;
        }
    };
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
    let report = match rt.block_on(runner::run_sync(&cfg, &opts, &progress, &args.users)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("imapshift: {e}");
            return runner::exit_code_for(&e);
        }
    };
    // With --json the report is the last event line (`"event": "summary"`).
    progress.finish_run(&report);
    if !args.json {
        print!("{}", runner::render_summary(&report));
    }
    report.exit_code
}

fn status(args: StatusArgs) -> i32 {
    let cfg = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("imapshift: {e}");
            return exit::CONFIG;
        }
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
