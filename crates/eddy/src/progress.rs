//! Progress of long work on stderr: redrawn in place (`\r`) for a person at
//! a terminal, a whole line every few seconds when stderr is a file or pipe
//! — redraws piped to a file become one long line nobody can read.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Lines written to a pipe or file are this far apart at least.
pub const PIPED_EVERY: Duration = Duration::from_secs(3);

/// One progress display.
pub struct Progress {
    terminal: bool,
    every: Duration,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    /// A display on stderr, redrawn in place only if stderr is a terminal.
    pub fn stderr() -> Progress {
        Progress::new(std::io::stderr().is_terminal(), PIPED_EVERY)
    }

    /// A display redrawn in place if `terminal`, else written as a line at
    /// most once per `every`.
    pub fn new(terminal: bool, every: Duration) -> Progress {
        Progress {
            terminal,
            every,
            last: None,
            drawn: false,
        }
    }

    /// What to write for `text` at `now`, if anything.
    pub fn render(&mut self, now: Instant, text: &str) -> Option<String> {
        if self.terminal {
            self.drawn = true;
            return Some(format!("\r{text}"));
        }
        // The first line waits a period too: short work prints nothing.
        let since = *self.last.get_or_insert(now);
        if now.duration_since(since) < self.every {
            return None;
        }
        self.last = Some(now);
        Some(format!("{}\n", text.trim_end()))
    }

    /// Shows `text` (or not, see [`Progress::render`]).
    pub fn show(&mut self, text: &str) {
        if let Some(out) = self.render(Instant::now(), text) {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(out.as_bytes());
            let _ = err.flush();
        }
    }

    /// Ends the display: clears a line redrawn in place (`clear`) or moves
    /// past it, so what follows starts on a line of its own.
    pub fn finish(&mut self, clear: bool) {
        if self.terminal && self.drawn {
            if clear {
                eprint!("\r{:80}\r", "");
            } else {
                eprintln!();
            }
        }
        self.drawn = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piped_output_is_whole_lines_a_period_apart() {
        let mut progress = Progress::new(false, Duration::from_secs(3));
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(progress.render(at(0), "a"), None);
        assert_eq!(progress.render(at(500), "b"), None);
        assert_eq!(progress.render(at(3000), "c  "), Some("c\n".into()));
        assert_eq!(progress.render(at(4000), "d"), None);
        assert_eq!(progress.render(at(6100), "e"), Some("e\n".into()));
    }

    #[test]
    fn a_terminal_redraws_in_place_every_time() {
        let mut progress = Progress::new(true, Duration::from_secs(3));
        let now = Instant::now();
        assert_eq!(progress.render(now, "a"), Some("\ra".into()));
        assert_eq!(progress.render(now, "b"), Some("\rb".into()));
    }
}
