//! Progress for people and for machines: indicatif bars on a terminal, periodic `tracing` lines
//! elsewhere, and JSON Lines events on stdout with `--json`.
//!
//! indicatif draws nothing when stderr is not a terminal (cron, CI, `| tee`), so the same counters
//! also feed an info line every few seconds in that case. On a terminal only the users being
//! synced have a bar (at most `jobs`), under one overall bar with users done, totals and ETA; a
//! finished user's bar becomes one printed line, so 100+ users never flicker or scroll the bars.
//! This is the only home of indicatif.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The run's progress display and event stream.
#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
    /// How often a user's progress is logged (no terminal) or sent as an event (`--json`).
    log_every: Duration,
    events: Option<Arc<Events>>,
    run: Arc<Run>,
}

/// Progress-type events (`progress`, `run_progress`, `folder_started`, `user_started`,
/// `user_retry`) that may wait for a slow reader; past this, new ones are dropped and counted.
const QUEUE_LINES: usize = 1024;

/// Kept events (`run_started`, `user_finished`) that may wait; past this even they are dropped
/// (counted), so that the engine never waits for the reader (one per user: only a reader
/// stalled for a run of more users than this loses one).
const KEPT_LINES: usize = 65_536;

/// After a stop request (Ctrl-C, SIGTERM), how long the final report waits for the reader before
/// the process gives up on it (docs/events.md).
pub const FINAL_WAIT_AFTER_STOP: Duration = Duration::from_secs(5);

/// How an event is queued for the writer thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Dropped when [`QUEUE_LINES`] of its kind wait already.
    Progress,
    /// Dropped only past [`KEPT_LINES`].
    Kept,
    /// The run's report: never dropped, and the run waits for it to be written.
    Final,
}

impl Class {
    fn of(event: &str) -> Class {
        match event {
            "summary" => Class::Final,
            "run_started" | "user_finished" => Class::Kept,
            _ => Class::Progress,
        }
    }
}

/// Lines waiting for the writer, and what became of them.
#[derive(Default)]
struct Queue {
    lines: std::collections::VecDeque<(Class, String)>,
    progress_waiting: usize,
    kept_waiting: usize,
    dropped: u64,
    /// No writer thread could be started: events are discarded.
    disabled: bool,
    /// Final reports queued / written (or the reader gone).
    finals_queued: u64,
    finals_done: u64,
}

/// The queue, shared by the emitters and the writer thread.
struct Shared {
    queue: Mutex<Queue>,
    changed: std::sync::Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// JSON Lines on stdout: one object per line, each with `event` and `ts` (Unix seconds).
///
/// The engine never writes: it queues, and one writer thread writes. A reader that stops reading
/// (a full pipe) blocks only that thread; progress events are then dropped and counted
/// (`events_dropped` in the summary), the final report never is.
struct Events {
    shared: Arc<Shared>,
}

impl Events {
    /// Events written to `out` by a thread of their own.
    fn start(out: Box<dyn Write + Send>) -> Events {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            changed: std::sync::Condvar::new(),
        });
        let writer = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("json-events".into())
            .spawn(move || write_events(&writer, out));
        if let Err(e) = spawned {
            tracing::warn!("no --json events: cannot start their writer thread: {e}");
            shared.lock().disabled = true;
        }
        Events { shared }
    }

    /// Events on stdout, through a file descriptor of their own (a blocked write holds no lock
    /// that the rest of the process, or its exit, needs).
    fn stdout() -> Events {
        use std::os::fd::AsFd;
        let out: Box<dyn Write + Send> = match std::io::stdout().as_fd().try_clone_to_owned() {
            Ok(fd) => Box::new(std::fs::File::from(fd)),
            Err(_) => Box::new(std::io::stdout()),
        };
        Events::start(out)
    }

    /// Queues one event; never waits for the reader.
    fn emit(&self, event: &str, fields: Value) {
        let class = Class::of(event);
        let mut q = self.shared.lock();
        if q.disabled {
            return;
        }
        let full = match class {
            Class::Progress => q.progress_waiting >= QUEUE_LINES,
            Class::Kept => q.kept_waiting >= KEPT_LINES,
            Class::Final => false,
        };
        if full {
            q.dropped += 1;
            return;
        }
        let mut obj = serde_json::Map::new();
        obj.insert("event".into(), event.into());
        // Taken under the queue's lock: the lines' times never go back.
        obj.insert("ts".into(), json!(unix_now()));
        if let Value::Object(f) = fields {
            obj.extend(f);
        }
        if class == Class::Final {
            obj.insert("events_dropped".into(), json!(q.dropped));
        }
        let mut line = serde_json::to_string(&Value::Object(obj)).unwrap_or_default();
        line.push('\n');
        match class {
            Class::Progress => q.progress_waiting += 1,
            Class::Kept => q.kept_waiting += 1,
            Class::Final => q.finals_queued += 1,
        }
        q.lines.push_back((class, line));
        drop(q);
        self.shared.changed.notify_all();
    }

    /// Waits until every final report queued so far is written. Without a stop request it waits
    /// as long as the reader takes (the run is done); once a stop is requested, at most
    /// [`FINAL_WAIT_AFTER_STOP`] more. `false`: the reader did not take it in time.
    fn wait_written(&self, stopped: &dyn Fn() -> bool, after_stop: Duration) -> bool {
        let mut deadline: Option<Instant> = None;
        let mut q = self.shared.lock();
        loop {
            if q.finals_done >= q.finals_queued {
                return true;
            }
            if deadline.is_none() && stopped() {
                deadline = Some(Instant::now() + after_stop);
            }
            let mut wait = Duration::from_millis(100);
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                wait = wait.min(left);
            }
            q = self
                .shared
                .changed
                .wait_timeout(q, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// The writer thread: takes what is queued and writes it, blocking only itself on a slow
/// reader. A reader gone (closed pipe) must not stop the migration: the rest is discarded.
fn write_events(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let mut reader_gone = false;
    loop {
        let taken: Vec<(Class, String)> = {
            let mut q = shared.lock();
            while q.lines.is_empty() {
                q = shared.changed.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            let taken: Vec<_> = q.lines.drain(..).collect();
            for (class, _) in &taken {
                match class {
                    Class::Progress => q.progress_waiting -= 1,
                    Class::Kept => q.kept_waiting -= 1,
                    Class::Final => {}
                }
            }
            taken
        };
        let mut finals = 0;
        for (class, line) in &taken {
            if !reader_gone {
                reader_gone = out.write_all(line.as_bytes()).is_err();
            }
            if *class == Class::Final {
                finals += 1;
            }
        }
        if !reader_gone {
            reader_gone = out.flush().is_err();
        }
        if finals > 0 {
            shared.lock().finals_done += finals;
            shared.changed.notify_all();
        }
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0)
}

/// Run-wide counters, for the overall bar, the overall log line and ETA.
struct Run {
    started: Mutex<Instant>,
    users_total: AtomicU64,
    users_done: AtomicU64,
    users_failed: AtomicU64,
    msgs: AtomicU64,
    bytes: AtomicU64,
    active: Mutex<Vec<Arc<Inner>>>,
    overall: Mutex<Option<ProgressBar>>,
    last_log: Mutex<Instant>,
}

impl Run {
    /// Fraction of the run done: finished users, plus each active user's share of its messages.
    fn fraction(&self) -> f64 {
        let total = self.users_total.load(Ordering::Relaxed).max(1) as f64;
        let done = self.users_done.load(Ordering::Relaxed) as f64;
        let partial: f64 = self
            .active
            .lock()
            .expect("progress lock")
            .iter()
            .map(|u| {
                let t = u.total.load(Ordering::Relaxed);
                if t == 0 {
                    0.0
                } else {
                    (u.msgs.load(Ordering::Relaxed) as f64 / t as f64).min(1.0)
                }
            })
            .sum();
        ((done + partial) / total).clamp(0.0, 1.0)
    }

    /// Seconds left, estimated from the fraction done so far.
    fn eta(&self) -> Option<f64> {
        let f = self.fraction();
        let s = self
            .started
            .lock()
            .expect("progress lock")
            .elapsed()
            .as_secs_f64();
        (f > 0.0 && s > 1.0).then(|| s * (1.0 - f) / f)
    }

    fn summary(&self) -> String {
        let active = self.active.lock().expect("progress lock").len();
        let done = self.users_done.load(Ordering::Relaxed);
        let total = self.users_total.load(Ordering::Relaxed);
        let waiting = total.saturating_sub(done + active as u64);
        let failed = self.users_failed.load(Ordering::Relaxed);
        let mut s = format!(
            "{done}/{total} users done, {active} active, {waiting} waiting; {} messages, {:.1} MB",
            self.msgs.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed) as f64 / 1e6
        );
        if failed > 0 {
            s.push_str(&format!("; {failed} not ok"));
        }
        s
    }

    fn redraw(&self) {
        if let Some(b) = self.overall.lock().expect("progress lock").as_ref() {
            b.set_position((self.fraction() * 1000.0) as u64);
            b.set_message(self.summary());
        }
    }
}

impl Progress {
    /// Bars when stderr is a terminal and `quiet` is off, log lines every `log_every` otherwise;
    /// JSON Lines events on stdout when `json`.
    pub fn new(quiet: bool, log_every: Duration, json: bool) -> Progress {
        let multi = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)));
        Progress {
            multi,
            log_every,
            events: json.then(|| Arc::new(Events::stdout())),
            run: Arc::new(Run {
                started: Mutex::new(Instant::now()),
                users_total: AtomicU64::new(0),
                users_done: AtomicU64::new(0),
                users_failed: AtomicU64::new(0),
                msgs: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                active: Mutex::new(Vec::new()),
                overall: Mutex::new(None),
                last_log: Mutex::new(Instant::now()),
            }),
        }
    }

    /// Whether bars are drawn (else log lines are written).
    pub fn is_drawing(&self) -> bool {
        self.multi.is_some()
    }

    /// The run begins: `users` to sync, `jobs` at a time. Draws the overall bar.
    /// Several runs may share one display (a cutover's final sync and follow passes): each
    /// starts its counters afresh.
    pub fn start_run(&self, users: usize, jobs: usize, dry_run: bool) {
        if let Some(b) = self.run.overall.lock().expect("progress lock").take() {
            b.finish_and_clear();
        }
        for c in [
            &self.run.users_done,
            &self.run.users_failed,
            &self.run.msgs,
            &self.run.bytes,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.run.users_total.store(users as u64, Ordering::Relaxed);
        *self.run.started.lock().expect("progress lock") = Instant::now();
        if let Some(m) = &self.multi {
            let b = m.add(ProgressBar::new(1000));
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix:>20.bold} [{bar:30.green/white}] {msg} (ETA {eta})",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            b.set_prefix("all users");
            *self.run.overall.lock().expect("progress lock") = Some(b);
            self.run.redraw();
        }
        if let Some(ev) = &self.events {
            ev.emit(
                "run_started",
                json!({ "users": users, "jobs": jobs, "dry_run": dry_run }),
            );
        }
    }

    /// The run's report, as the last event (`summary`, with the report's fields and
    /// `events_dropped`), and the wait until it is written: as long as the reader takes, but
    /// after a stop request (Ctrl-C, SIGTERM) at most [`FINAL_WAIT_AFTER_STOP`]. `false` when
    /// the reader did not take it then: the caller exits 130 (docs/events.md).
    pub fn finish_run<T: Serialize>(&self, report: &T) -> bool {
        if let Some(b) = self.run.overall.lock().expect("progress lock").take() {
            b.finish_and_clear();
        }
        let Some(ev) = &self.events else {
            return true;
        };
        ev.emit(
            "summary",
            serde_json::to_value(report).unwrap_or(Value::Null),
        );
        ev.wait_written(&crate::failpoint::stop_requested, FINAL_WAIT_AFTER_STOP)
    }

    /// A tracker for one user's sync, from its start to `finish`.
    pub fn user(&self, name: &str) -> UserProgress {
        let bar = self.multi.as_ref().map(|m| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix:>20.bold} [{bar:30.cyan/blue}] {pos}/{len} msgs {msg}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            b.set_prefix(truncate(name, 20));
            // Above the overall bar, which stays last.
            let overall = self.run.overall.lock().expect("progress lock");
            match overall.as_ref() {
                Some(o) => m.insert_before(o, b),
                None => m.add(b),
            }
        });
        let inner = Arc::new(Inner {
            name: name.to_string(),
            bar,
            msgs: AtomicU64::new(0),
            total: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            folder: Mutex::new(String::new()),
            last_log: Mutex::new(Instant::now()),
            started: Instant::now(),
        });
        self.run
            .active
            .lock()
            .expect("progress lock")
            .push(inner.clone());
        self.run.redraw();
        if let Some(ev) = &self.events {
            ev.emit("user_started", json!({ "user": name }));
        }
        UserProgress {
            inner,
            progress: self.clone(),
        }
    }

    /// Prints a line above the bars (or to stderr).
    pub fn println(&self, line: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// Every `log_every`: the overall line (no terminal) and the `run_progress` event.
    fn maybe_log_run(&self) {
        {
            let mut last = self.run.last_log.lock().expect("progress lock");
            if last.elapsed() < self.log_every {
                return;
            }
            *last = Instant::now();
        }
        let eta = self.run.eta();
        if self.multi.is_none() {
            tracing::info!(
                "progress: {}{}",
                self.run.summary(),
                eta.map(|s| format!(", ETA {}", human_secs(s)))
                    .unwrap_or_default()
            );
        }
        if let Some(ev) = &self.events {
            ev.emit(
                "run_progress",
                json!({
                    "users_total": self.run.users_total.load(Ordering::Relaxed),
                    "users_done": self.run.users_done.load(Ordering::Relaxed),
                    "users_active": self.run.active.lock().expect("progress lock").len(),
                    "messages": self.run.msgs.load(Ordering::Relaxed),
                    "bytes": self.run.bytes.load(Ordering::Relaxed),
                    "fraction_done": (self.run.fraction() * 1000.0).round() / 1000.0,
                    "eta_seconds": eta.map(|s| s.round()),
                }),
            );
        }
    }
}

fn human_secs(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}…")
    }
}

struct Inner {
    name: String,
    bar: Option<ProgressBar>,
    msgs: AtomicU64,
    total: AtomicU64,
    bytes: AtomicU64,
    folder: Mutex<String>,
    last_log: Mutex<Instant>,
    started: Instant,
}

/// How a user's sync ended, for its last line and event.
#[derive(Clone, Debug, Serialize)]
pub struct UserOutcome<'a> {
    pub status: &'a str,
    pub copied: u64,
    pub skipped: u64,
    pub failed: u64,
    pub bytes: u64,
    pub retries: u32,
    pub error: Option<&'a str>,
}

/// Progress of one user.
#[derive(Clone)]
pub struct UserProgress {
    inner: Arc<Inner>,
    progress: Progress,
}

impl UserProgress {
    /// Adds messages to copy to the total.
    pub fn add_total(&self, msgs: u64) {
        let t = self.inner.total.fetch_add(msgs, Ordering::Relaxed) + msgs;
        if let Some(b) = &self.inner.bar {
            b.set_length(t);
        }
    }

    /// The folder being synced now.
    pub fn folder(&self, name: &str) {
        *self.inner.folder.lock().expect("progress lock") = name.to_string();
        self.redraw();
        if let Some(ev) = &self.progress.events {
            ev.emit(
                "folder_started",
                json!({ "user": self.inner.name, "folder": name }),
            );
        }
    }

    /// Messages done (copied or failed) and bytes copied.
    pub fn inc(&self, msgs: u64, bytes: u64) {
        self.inner.msgs.fetch_add(msgs, Ordering::Relaxed);
        self.inner.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.progress.run.msgs.fetch_add(msgs, Ordering::Relaxed);
        self.progress.run.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(b) = &self.inner.bar {
            b.inc(msgs);
        }
        self.redraw();
        self.progress.run.redraw();
        let due = {
            let mut last = self.inner.last_log.lock().expect("progress lock");
            let due = last.elapsed() >= self.progress.log_every;
            if due {
                *last = Instant::now();
            }
            due
        };
        if due {
            let (done, total, bytes) = (
                self.inner.msgs.load(Ordering::Relaxed),
                self.inner.total.load(Ordering::Relaxed),
                self.inner.bytes.load(Ordering::Relaxed),
            );
            let folder = self.inner.folder.lock().expect("progress lock").clone();
            if self.inner.bar.is_none() {
                tracing::info!(
                    user = %self.inner.name,
                    "progress: {done}/{total} messages, {:.1} MB, {:.0} msg/s, folder {folder}",
                    bytes as f64 / 1e6,
                    self.rate(),
                );
            }
            if let Some(ev) = &self.progress.events {
                ev.emit(
                    "progress",
                    json!({
                        "user": self.inner.name,
                        "folder": folder,
                        "messages_done": done,
                        "messages_total": total,
                        "bytes_done": bytes,
                        "messages_per_sec": self.rate().round(),
                    }),
                );
            }
        }
        self.progress.maybe_log_run();
    }

    /// The user's connection broke; it reconnects in `wait`.
    pub fn retry(&self, attempt: u32, wait: Duration, error: &str) {
        if let Some(ev) = &self.progress.events {
            ev.emit(
                "user_retry",
                json!({
                    "user": self.inner.name,
                    "attempt": attempt,
                    "wait_seconds": wait.as_secs_f64(),
                    "error": error,
                }),
            );
        }
    }

    fn rate(&self) -> f64 {
        let s = self.inner.started.elapsed().as_secs_f64().max(0.001);
        self.inner.msgs.load(Ordering::Relaxed) as f64 / s
    }

    fn redraw(&self) {
        if let Some(b) = &self.inner.bar {
            let folder = self.inner.folder.lock().expect("progress lock").clone();
            b.set_message(format!(
                "{:.1} MB {:.0}/s {}",
                self.inner.bytes.load(Ordering::Relaxed) as f64 / 1e6,
                self.rate(),
                truncate(&folder, 30)
            ));
        }
    }

    /// The user is done: its bar gives way to one line, the run counters move on.
    pub fn finish(&self, outcome: &UserOutcome<'_>) {
        let run = &self.progress.run;
        run.active
            .lock()
            .expect("progress lock")
            .retain(|u| !Arc::ptr_eq(u, &self.inner));
        run.users_done.fetch_add(1, Ordering::Relaxed);
        if outcome.status != "ok" {
            run.users_failed.fetch_add(1, Ordering::Relaxed);
        }
        let secs = self.inner.started.elapsed().as_secs_f64();
        let line = format!(
            "{}: {}, {} copied, {} failed, {:.1} MB in {:.1}s{}",
            self.inner.name,
            outcome.status,
            outcome.copied,
            outcome.failed,
            outcome.bytes as f64 / 1e6,
            secs,
            outcome.error.map(|e| format!(": {e}")).unwrap_or_default()
        );
        match (&self.inner.bar, &self.progress.multi) {
            (Some(b), Some(m)) => {
                b.finish_and_clear();
                m.remove(b);
                let _ = m.println(line);
            }
            _ => tracing::info!(user = %self.inner.name, "finished: {line}"),
        }
        run.redraw();
        if let Some(ev) = &self.progress.events {
            let mut v = serde_json::to_value(outcome).unwrap_or(Value::Null);
            if let Value::Object(o) = &mut v {
                o.insert("user".into(), self.inner.name.clone().into());
                o.insert("seconds".into(), json!((secs * 1000.0).round() / 1000.0));
            }
            ev.emit("user_finished", v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_and_eta_follow_users_and_messages() {
        let p = Progress::new(true, Duration::from_secs(3600), false);
        p.start_run(4, 2, false);
        let a = p.user("a");
        let b = p.user("b");
        a.add_total(10);
        a.inc(5, 100);
        b.add_total(0);
        // a is half done: 0.5 of 4 users.
        assert!((p.run.fraction() - 0.125).abs() < 1e-9);
        a.inc(5, 100);
        a.finish(&UserOutcome {
            status: "ok",
            copied: 10,
            skipped: 0,
            failed: 0,
            bytes: 200,
            retries: 0,
            error: None,
        });
        assert!((p.run.fraction() - 0.25).abs() < 1e-9);
        assert_eq!(
            p.run.summary(),
            "1/4 users done, 1 active, 2 waiting; 10 messages, 0.0 MB"
        );
        assert_eq!(human_secs(59.4), "59s");
        assert_eq!(human_secs(61.0), "1m01s");
        assert_eq!(human_secs(7300.0), "2h01m");
    }

    /// A reader that takes nothing until the gate opens (a full pipe).
    struct Gated {
        open: Arc<(Mutex<bool>, std::sync::Condvar)>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gated {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let (open, cv) = &*self.open;
            let mut g = open.lock().unwrap();
            while !*g {
                g = cv.wait(g).unwrap();
            }
            self.out.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_reader_drops_progress_but_never_the_summary() {
        let open = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let out = Arc::new(Mutex::new(Vec::new()));
        let ev = Events::start(Box::new(Gated {
            open: open.clone(),
            out: out.clone(),
        }));
        ev.emit("run_started", json!({ "users": 1 }));
        let sent = 3 * QUEUE_LINES;
        // None of these waits for the reader (a blocking emit would hang here).
        for i in 0..sent {
            ev.emit("progress", json!({ "messages_done": i }));
        }
        ev.emit("user_finished", json!({ "user": "alice" }));
        ev.emit("summary", json!({ "copied": 7 }));
        // Stopped and the reader still takes nothing: the wait ends.
        assert!(!ev.wait_written(&|| true, Duration::from_millis(50)));
        *open.0.lock().unwrap() = true;
        open.1.notify_all();
        assert!(ev.wait_written(&|| false, Duration::ZERO));
        let written = out.lock().unwrap().clone();
        let events: Vec<Value> = serde_json::Deserializer::from_slice(&written)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
        assert_eq!(kinds.len(), events.len());
        assert_eq!(kinds[0], "run_started");
        assert_eq!(kinds[kinds.len() - 2..], ["user_finished", "summary"]);
        let summary = events.last().unwrap();
        assert_eq!(summary["copied"], 7);
        let dropped = summary["events_dropped"].as_u64().unwrap();
        let progress = kinds.iter().filter(|k| **k == "progress").count();
        assert!(
            dropped > 0 && progress <= 2 * QUEUE_LINES,
            "{dropped} {progress}"
        );
        assert_eq!(progress as u64 + dropped, sent as u64);
        let ts: Vec<f64> = events.iter().map(|e| e["ts"].as_f64().unwrap()).collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn a_reader_gone_ends_the_final_wait() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let ev = Events::start(Box::new(Closed));
        ev.emit("progress", json!({}));
        ev.emit("summary", json!({}));
        assert!(ev.wait_written(&|| false, Duration::ZERO));
    }
}
