//! Progress for people: indicatif bars on a terminal, periodic `tracing` lines elsewhere.
//!
//! indicatif draws nothing when stderr is not a terminal (cron, CI, `| tee`), so the same counters
//! also feed an info line every few seconds in that case. This is the only home of indicatif.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The run's progress display.
#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
    /// How often a non-terminal run logs each user's progress.
    log_every: Duration,
}

impl Progress {
    /// Bars when stderr is a terminal and `quiet` is off; log lines every `log_every` otherwise.
    pub fn new(quiet: bool, log_every: Duration) -> Progress {
        let multi = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)));
        Progress { multi, log_every }
    }

    /// Whether bars are drawn (else log lines are written).
    pub fn is_drawing(&self) -> bool {
        self.multi.is_some()
    }

    /// A tracker for one user's sync.
    pub fn user(&self, name: &str) -> UserProgress {
        let bar = self.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::new(0));
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix:>20.bold} [{bar:30.cyan/blue}] {pos}/{len} msgs {msg}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            b.set_prefix(truncate(name, 20));
            b
        });
        UserProgress {
            inner: Arc::new(Inner {
                name: name.to_string(),
                bar,
                msgs: AtomicU64::new(0),
                total: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                folder: Mutex::new(String::new()),
                last_log: Mutex::new(Instant::now()),
                started: Instant::now(),
                log_every: self.log_every,
            }),
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
    log_every: Duration,
}

/// Progress of one user.
#[derive(Clone)]
pub struct UserProgress {
    inner: Arc<Inner>,
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
    }

    /// Messages done (copied or failed) and bytes copied.
    pub fn inc(&self, msgs: u64, bytes: u64) {
        self.inner.msgs.fetch_add(msgs, Ordering::Relaxed);
        self.inner.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(b) = &self.inner.bar {
            b.inc(msgs);
        }
        self.redraw();
        let mut last = self.inner.last_log.lock().expect("progress lock");
        if self.inner.bar.is_none() && last.elapsed() >= self.inner.log_every {
            *last = Instant::now();
            tracing::info!(
                user = %self.inner.name,
                "progress: {}/{} messages, {:.1} MB, {:.0} msg/s, folder {}",
                self.inner.msgs.load(Ordering::Relaxed),
                self.inner.total.load(Ordering::Relaxed),
                self.inner.bytes.load(Ordering::Relaxed) as f64 / 1e6,
                self.rate(),
                self.inner.folder.lock().expect("progress lock"),
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

    /// Ends the bar with a final word.
    pub fn finish(&self, word: &str) {
        if let Some(b) = &self.inner.bar {
            b.finish_with_message(word.to_string());
        }
    }
}
