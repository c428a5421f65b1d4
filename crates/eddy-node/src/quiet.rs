//! Rate-limited logging for events an attacker can repeat at will (refused
//! connections, bad frames, `accept` failures): at most one line per site per
//! interval, carrying how many were suppressed since the last line. Metrics
//! count every event; only the log is thinned.
//!
//! Time is an input ([`LogLimiter::admit`] takes `now`), so the policy is
//! tested without sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One log site's limiter: lets one line through per `interval`.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter letting one line through per `interval`.
    pub const fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval,
            state: Mutex::new(State {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// Whether to log an event seen at `now`: `Some(suppressed)` (the
    /// number of events not logged since the last line) or `None`.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        // A poisoned lock only means another thread panicked while counting;
        // the counts are still usable.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match state.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                state.suppressed += 1;
                None
            }
            _ => {
                state.last = Some(now);
                Some(std::mem::take(&mut state.suppressed))
            }
        }
    }
}

/// Logs a WARN through a static per-site [`LogLimiter`] of one line per
/// second, adding a `suppressed` field.
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)+) => {{
        static LIMITER: $crate::quiet::LogLimiter =
            $crate::quiet::LogLimiter::new(std::time::Duration::from_secs(1));
        if let Some(suppressed) = LIMITER.admit(std::time::Instant::now()) {
            tracing::warn!(suppressed, $($arg)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_of_the_rest() {
        let limiter = LogLimiter::new(Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(limiter.admit(start), Some(0));
        let mut let_through = 0;
        for ms in 1..1000 {
            if limiter.admit(start + Duration::from_millis(ms)).is_some() {
                let_through += 1;
            }
        }
        assert_eq!(let_through, 0, "nothing more within the first second");
        assert_eq!(
            limiter.admit(start + Duration::from_millis(1000)),
            Some(999)
        );
        assert_eq!(limiter.admit(start + Duration::from_millis(1001)), None);
        assert_eq!(limiter.admit(start + Duration::from_millis(2500)), Some(1));
    }
}
