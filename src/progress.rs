//! What the long steps show while they run: on a terminal, a spinner for a step and a bar with
//! bytes and rate for packing; otherwise plain lines (one when a step starts, one when it ends),
//! so a CI log reads top to bottom. Everything goes to stderr; stdout stays for results.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Byte meters are shown only once a command turns them on (build, package, convert): library
/// callers and tests stay silent.
static BYTES_SHOWN: AtomicBool = AtomicBool::new(false);

/// Turns on the byte meters for this process.
pub fn show_bytes() {
    BYTES_SHOWN.store(true, Ordering::Relaxed);
}

fn on_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Named steps: a spinner naming the running step on a terminal, a line per start and end
/// otherwise. `quiet` shows nothing.
pub struct Steps {
    quiet: bool,
    bar: Option<ProgressBar>,
}

impl Steps {
    pub fn new(quiet: bool) -> Self {
        let bar = (!quiet && on_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self { quiet, bar }
    }

    /// A step begins (only steps that do work are announced; cached ones just finish).
    pub fn start(&self, label: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(label.to_string()),
            None if !self.quiet => eprintln!("{label} ..."),
            None => {}
        }
    }

    /// A step ended: `cached` when it did no work.
    pub fn finish(&self, name: &str, cached: bool, took: Duration) {
        let line = if cached {
            format!("{name}: cached")
        } else {
            format!("{name}: done in {:.1}s", took.as_secs_f64())
        };
        self.line(&line);
    }

    /// A step failed (the error itself is reported by the caller).
    pub fn fail(&self, name: &str) {
        if let Some(bar) = &self.bar {
            bar.println(format!("{name}: FAILED"));
        }
    }

    fn line(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None if !self.quiet => eprintln!("{line}"),
            None => {}
        }
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Bytes through one long pass (converting a disk, compressing an image): a bar with bytes,
/// rate and time left on a terminal; otherwise one line with size, time and rate when the pass
/// completes (nothing on failure, so an error stays the only line). Safe to feed from many
/// threads.
pub struct ByteMeter {
    label: String,
    shown: bool,
    bar: Option<ProgressBar>,
    done: AtomicU64,
    start: Instant,
}

impl ByteMeter {
    /// A meter for `total` bytes, silent unless [`show_bytes`] was called.
    pub fn new(label: impl Into<String>, total: u64) -> Self {
        let shown = BYTES_SHOWN.load(Ordering::Relaxed);
        let label = label.into();
        let bar = (shown && on_terminal()).then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}, {eta} left",
            )
            .expect("valid template")
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(label.clone());
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Self {
            label,
            shown,
            bar,
            done: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    /// `n` more bytes went through.
    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Bytes counted so far.
    pub fn bytes(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// `input`, counting every byte read from it.
    pub fn reader<R: Read>(&self, input: R) -> MeteredRead<'_, R> {
        MeteredRead { input, meter: self }
    }

    /// The pass completed: clears the bar and prints the summary line.
    pub fn finish(self) {
        if !self.shown {
            return;
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!(
            "{}",
            summary(&self.label, self.bytes(), self.start.elapsed())
        );
    }
}

impl Drop for ByteMeter {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `label: 1234.5 MiB in 12.3s (100.4 MiB/s)`.
fn summary(label: &str, bytes: u64, took: Duration) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    let secs = took.as_secs_f64();
    format!(
        "{label}: {mib:.1} MiB in {secs:.1}s ({:.1} MiB/s)",
        mib / secs.max(0.001)
    )
}

/// A reader that counts what passes through it into a [`ByteMeter`].
pub struct MeteredRead<'m, R> {
    input: R,
    meter: &'m ByteMeter,
}

impl<R: Read> Read for MeteredRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        self.meter.add(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_counts_bytes_read_through_it() {
        let meter = ByteMeter::new("test", 10);
        let mut out = Vec::new();
        meter
            .reader(&b"0123456789abc"[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(meter.bytes(), 13);
        meter.add(7);
        assert_eq!(meter.bytes(), 20);
    }

    #[test]
    fn summary_gives_size_time_and_rate() {
        let s = summary("qcow2", 300 * 1024 * 1024, Duration::from_secs(3));
        assert_eq!(s, "qcow2: 300.0 MiB in 3.0s (100.0 MiB/s)");
    }
}
