//! Signal names as docker takes them (`--stop-signal`, an image's
//! `STOPSIGNAL`, compose `stop_signal:`): `SIGQUIT`, `QUIT`, `quit` or a
//! number, for Linux.

/// Linux's standard signals, by number from 1.
const NAMES: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];

/// The highest signal number (`SIGRTMAX`).
const MAX: i32 = 64;

/// SIGTERM: what stops a task when nothing says otherwise.
pub const SIGTERM: i32 = 15;

/// A signal: its number and its name as docker shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(pub i32);

impl Signal {
    /// Reads a signal name or number; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Signal, String> {
        let t = text.trim();
        if let Ok(n) = t.parse::<i32>() {
            return if (1..=MAX).contains(&n) {
                Ok(Signal(n))
            } else {
                Err(format!("signal {n} is not between 1 and {MAX}"))
            };
        }
        let upper = t.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        NAMES
            .iter()
            .position(|n| *n == bare)
            .map(|i| Signal(i as i32 + 1))
            .ok_or_else(|| {
                format!(
                    "`{text}` is not a signal: give a name such as SIGTERM or QUIT, or a number"
                )
            })
    }

    /// `SIGQUIT`, or the number for real-time signals.
    pub fn name(self) -> String {
        match usize::try_from(self.0 - 1).ok().and_then(|i| NAMES.get(i)) {
            Some(n) => format!("SIG{n}"),
            None => self.0.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_read_as_docker_reads_them() {
        for text in ["SIGQUIT", "QUIT", "quit", "sigquit", "3", " SIGQUIT "] {
            assert_eq!(Signal::parse(text), Ok(Signal(3)), "{text}");
        }
        assert_eq!(Signal::parse("SIGTERM").unwrap().0, SIGTERM);
        assert_eq!(Signal::parse("sys").unwrap().0, 31);
        assert_eq!(Signal::parse("40").unwrap().name(), "40");
        assert_eq!(Signal::parse("USR1").unwrap().name(), "SIGUSR1");
        for bad in ["0", "65", "-1", "SIGNOPE", "", "SIG"] {
            assert!(Signal::parse(bad).is_err(), "{bad}");
        }
    }
}
