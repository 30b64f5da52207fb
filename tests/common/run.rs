//! Running the binary from tests, so that each test says what it checks and not again how a
//! run is set up: [`SyncRun`], one finished `imapshift sync --json` with readers for the parts
//! of its report that fault tests check (the first user's failures and retries, per-folder
//! sums); [`show_output`] to print a run's tail when an assertion fails; runs that must exit 0
//! ([`run_imapshift_ok`], [`run_cmd_ok`], [`sync_json_ok`]) or with a given code
//! ([`assert_exit`]); [`sum_over_folders`] of a report; and [`DovecotPair`], the old and new
//! Dovecot of the common one-user ("alice") or `env:PW` setups with their `imapshift.toml`.

use super::{
    plain_config, run_imapshift, spawn_imapshift, sync_report, write_config, Dovecot, DovecotOpts,
};
use std::path::{Path, PathBuf};
use std::process::Output;

/// The environment a config from [`alice_config`] reads alice's passwords from: `old-a` on the
/// old server, `new-a` on the new one.
pub const ALICE_ENVS: &[(&str, &str)] = &[("A_OLD", "old-a"), ("A_NEW", "new-a")];

/// The environment a [`plain_config`] reads every password from (`env:PW`).
pub const PW_ENVS: &[(&str, &str)] = &[("PW", "pw")];

/// Writes `<dir>/imapshift.toml` for the one user alice (same login on both sides, passwords
/// from [`ALICE_ENVS`]).
pub fn alice_config(dir: &Path, old: &Dovecot, new: &Dovecot) -> PathBuf {
    write_config(dir, old, new, &[("alice", "alice", "A_OLD", "A_NEW")])
}

/// Default Dovecot options with `extra_conf` appended to the server's configuration.
pub fn dovecot_opts(extra_conf: &str) -> DovecotOpts {
    DovecotOpts {
        extra_conf: extra_conf.into(),
        ..Default::default()
    }
}

/// Panics unless `out` exited with `code`, showing its stderr.
#[track_caller]
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// [`run_imapshift`], asserting exit 0 (else panics showing stderr).
#[track_caller]
pub fn run_imapshift_ok(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let out = run_imapshift(args, envs);
    assert_exit(&out, 0);
    out
}

/// `imapshift <cmd> --config <cfg> <extra...>` with `envs`.
pub fn run_cmd(cmd: &str, cfg: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut args = vec![cmd, "--config", cfg.to_str().unwrap()];
    args.extend_from_slice(extra);
    run_imapshift(&args, envs)
}

/// [`run_cmd`], asserting exit 0 (else panics showing stderr).
#[track_caller]
pub fn run_cmd_ok(cmd: &str, cfg: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Output {
    let out = run_cmd(cmd, cfg, extra, envs);
    assert_exit(&out, 0);
    out
}

/// `imapshift sync --config <cfg> --json <extra...>`, asserting exit 0; its report.
#[track_caller]
pub fn sync_json_ok(cfg: &Path, extra: &[&str], envs: &[(&str, &str)]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(extra);
    let out = run_cmd_ok("sync", cfg, &all, envs);
    sync_report(&out.stdout)
        .unwrap_or_else(|e| panic!("sync: no JSON report ({e})\n{}", show_output(&out)))
}

/// `imapshift <cmd> --config <cfg> <extra...>` with `envs`, started in the background (see
/// [`spawn_imapshift`]).
pub fn spawn_cmd(
    cmd: &str,
    cfg: &Path,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> std::process::Child {
    let mut args = vec![cmd, "--config", cfg.to_str().unwrap()];
    args.extend_from_slice(extra);
    spawn_imapshift(&args, envs)
}

/// The sum of the number `key` over the first user's folders of a sync report; every folder
/// must report it.
#[track_caller]
pub fn sum_over_folders(report: &serde_json::Value, key: &str) -> u64 {
    let folders = report["users"][0]["folders"]
        .as_array()
        .unwrap_or_else(|| panic!("no folders in {report}"));
    folders
        .iter()
        .map(|f| f[key].as_u64().unwrap_or_else(|| panic!("no {key} in {f}")))
        .sum()
}

/// Two started Dovecots ("old" and "new"), a temporary directory and the `imapshift.toml` in
/// it that migrates between them; `envs` is the environment that config reads passwords from.
pub struct DovecotPair {
    pub old: Dovecot,
    pub new: Dovecot,
    pub dir: tempfile::TempDir,
    pub cfg: PathBuf,
    pub envs: &'static [(&'static str, &'static str)],
}

impl DovecotPair {
    /// alice alone (`old-a` on the old server, `new-a` on the new), default servers, the config
    /// of [`alice_config`].
    pub fn alice() -> DovecotPair {
        DovecotPair::alice_with(DovecotOpts::default(), DovecotOpts::default())
    }

    /// [`DovecotPair::alice`] with these server options.
    pub fn alice_with(old_opts: DovecotOpts, new_opts: DovecotOpts) -> DovecotPair {
        let old = Dovecot::start("old", &[("alice", "old-a")], old_opts);
        let new = Dovecot::start("new", &[("alice", "new-a")], new_opts);
        let dir = tempfile::tempdir().unwrap();
        let cfg = alice_config(dir.path(), &old, &new);
        DovecotPair {
            old,
            new,
            dir,
            cfg,
            envs: ALICE_ENVS,
        }
    }

    /// `users`, each with the password `pw` on both default servers, and a [`plain_config`]
    /// with `tables` (passwords from [`PW_ENVS`]).
    pub fn plain(users: &[&str], tables: &str) -> DovecotPair {
        let accounts: Vec<(&str, &str)> = users.iter().map(|u| (*u, "pw")).collect();
        let old = Dovecot::start("old", &accounts, DovecotOpts::default());
        let new = Dovecot::start("new", &accounts, DovecotOpts::default());
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("imapshift.toml");
        std::fs::write(
            &cfg,
            plain_config(old.port(), new.port(), "", "", tables, users),
        )
        .unwrap();
        DovecotPair {
            old,
            new,
            dir,
            cfg,
            envs: PW_ENVS,
        }
    }

    /// The state directory of the config (`state_dir = "state"`).
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// [`run_cmd`] on this config with its password environment.
    pub fn run_cmd(&self, cmd: &str, extra: &[&str]) -> Output {
        run_cmd(cmd, &self.cfg, extra, self.envs)
    }

    /// [`run_cmd_ok`] on this config with its password environment.
    #[track_caller]
    pub fn run_cmd_ok(&self, cmd: &str, extra: &[&str]) -> Output {
        run_cmd_ok(cmd, &self.cfg, extra, self.envs)
    }

    /// [`sync_json_ok`] on this config with its password environment.
    #[track_caller]
    pub fn sync_ok(&self, extra: &[&str]) -> serde_json::Value {
        sync_json_ok(&self.cfg, extra, self.envs)
    }
}

/// One finished `sync --json` run: its exit code, its JSON report and its raw output.
pub struct SyncRun {
    pub code: Option<i32>,
    pub j: serde_json::Value,
    pub out: Output,
}

impl SyncRun {
    /// Reads the report of a finished `sync --json` (panics with the output if there is none) and
    /// prints a line about it, labelled by the extra arguments.
    pub fn of(out: Output, extra: &[&str]) -> SyncRun {
        let j = crate::common::sync_report(&out.stdout)
            .unwrap_or_else(|e| panic!("sync: no JSON report ({e})\n{}", show_output(&out)));
        let code = out.status.code();
        println!(
            "sync {extra:?}: exit {code:?}, copied {}, user {} (retries {}), failures {}",
            j["copied"],
            j["users"][0]["status"],
            j["users"][0]["retries"],
            j["users"][0]["failures"]
        );
        SyncRun { code, j, out }
    }

    pub fn user(&self) -> &serde_json::Value {
        &self.j["users"][0]
    }

    /// `(folder, old_uid)` of every entry of `users[0].failures`.
    pub fn failures(&self) -> Vec<(String, Option<u64>)> {
        self.user()["failures"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                (
                    f["folder"].as_str().unwrap_or("?").to_string(),
                    f["old_uid"].as_u64(),
                )
            })
            .collect()
    }

    pub fn copied(&self) -> u64 {
        self.j["copied"].as_u64().unwrap_or(u64::MAX)
    }

    pub fn retries(&self) -> u64 {
        self.user()["retries"].as_u64().unwrap_or(0)
    }

    /// The sum of the number `k` over the first user's folders.
    pub fn folder_sum(&self, k: &str) -> u64 {
        self.user()["folders"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| f[k].as_u64().unwrap_or(0))
            .sum()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    pub fn show(&self) -> String {
        show_output(&self.out)
    }
}

/// The exit status, the last stdout line (the report) and the last 40 stderr lines.
pub fn show_output(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    format!(
        "exit {}\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or(""),
        lines[lines.len().saturating_sub(40)..].join("\n")
    )
}
