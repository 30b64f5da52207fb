//! [`SyncRun`]: one finished `imapshift sync --json`, with readers for the parts of its report
//! that fault tests check (the first user's failures and retries, per-folder sums), and
//! [`show_output`] to print a run's tail when an assertion fails.

use std::process::Output;

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
