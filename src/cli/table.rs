//! Listings: aligned columns like docker's, or JSON (`--format json`), or
//! ids alone (`-q`); and the time phrases docker's columns use.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

/// How a listing is printed.
#[derive(Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    #[default]
    Table,
    /// One JSON document.
    Json,
}

/// Prints `rows` under `header` (see [`render`]).
pub fn print(header: &[&str], rows: &[Vec<String>]) {
    let _ = std::io::stdout()
        .lock()
        .write_all(render(header, rows).as_bytes());
}

/// `rows` under `header`, each column as wide as its widest cell plus
/// three spaces, as docker does; one line each, ending in a newline.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<width$}", width = w + 3));
            }
        }
        let mut s = s.trim_end().to_owned();
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Prints `ids`, one a line: what `-q` lists.
pub fn quiet<'a>(ids: impl IntoIterator<Item = &'a str>) {
    let mut out = std::io::stdout().lock();
    for id in ids {
        let _ = writeln!(out, "{id}");
    }
}

/// An id as listings show it without `--no-trunc`: its first 12
/// characters, as docker's `stringid.TruncateID`.
pub fn short_id(id: &str) -> &str {
    id.char_indices().nth(12).map_or(id, |(i, _)| &id[..i])
}

/// Prints `value` as pretty JSON.
pub fn json<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Milliseconds since the UNIX epoch, by this machine's clock: the "now"
/// that listings measure ages from, as docker's CLI does.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How long ago something at `at_ms` was, from `now_ms`, in docker's
/// words (`units.HumanDuration`, lowercased as `ps` shows it): `less than
/// a second ago`, `5 minutes ago`, `about an hour ago`. A time ahead of
/// `now_ms` (clocks apart) reads as just now.
pub fn ago(at_ms: u64, now_ms: u64) -> String {
    let d = Duration::from_millis(now_ms.saturating_sub(at_ms));
    format!("{} ago", human_duration(d).to_lowercase())
}

/// go-units' `HumanDuration`.
fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    // Hours are rounded to the nearest, as `d.Round(time.Hour)` does.
    let hours = (d.as_millis() + 1_800_000) / 3_600_000;
    match () {
        _ if seconds < 1 => "Less than a second".into(),
        _ if seconds == 1 => "1 second".into(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", seconds / 3600 / 24 / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_dockers() {
        let s = 1000;
        let now = 1_700_000_000 * s;
        let cases = [
            (0, "less than a second ago"),
            (999, "less than a second ago"),
            (s, "1 second ago"),
            (2 * s, "2 seconds ago"),
            (59 * s, "59 seconds ago"),
            (60 * s, "about a minute ago"),
            (119 * s, "about a minute ago"),
            (5 * 60 * s, "5 minutes ago"),
            (59 * 60 * s, "59 minutes ago"),
            (60 * 60 * s, "about an hour ago"),
            (89 * 60 * s, "about an hour ago"),
            (90 * 60 * s, "2 hours ago"),
            (47 * 3600 * s, "47 hours ago"),
            (48 * 3600 * s, "2 days ago"),
            (13 * 86_400 * s, "13 days ago"),
            (14 * 86_400 * s, "2 weeks ago"),
            (59 * 86_400 * s, "8 weeks ago"),
            (60 * 86_400 * s, "2 months ago"),
            (729 * 86_400 * s, "24 months ago"),
            (730 * 86_400 * s, "2 years ago"),
        ];
        for (age, want) in cases {
            assert_eq!(ago(now - age, now), want, "{age} ms");
        }
        assert_eq!(ago(now + 5 * s, now), "less than a second ago");
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_plus_three() {
        let rows = vec![
            vec!["a".to_owned(), "long cell".to_owned(), "x".to_owned()],
            vec!["bbbb".to_owned(), String::new(), String::new()],
        ];
        assert_eq!(
            render(&["ID", "NAME", "LAST"], &rows),
            "ID     NAME        LAST\n\
             a      long cell   x\n\
             bbbb\n"
        );
    }
}
