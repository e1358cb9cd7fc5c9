//! Reading task logs for `service logs [-f] [--tail N]`: whole lines only,
//! from an offset, so a follower reads each line once.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// The most bytes one read returns; a follower comes back for the rest.
const CHUNK: u64 = 1 << 20;

/// Lines of a log and the offset after them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lines {
    /// Whole lines, without their newline.
    pub lines: Vec<String>,
    /// Where the next read starts.
    pub offset: u64,
}

/// The last `tail` lines of the log at `path` (all with `None`), and the
/// offset after them. A missing log has no lines.
pub fn tail(path: &Path, tail: Option<usize>) -> io::Result<Lines> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lines::default()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    // Read backwards in chunks until enough newlines are seen.
    let want = tail.map(|n| n.saturating_add(1));
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let enough = want.is_some_and(|w| buf.iter().filter(|&&b| b == b'\n').count() >= w);
        if start == 0 || enough {
            break;
        }
        let step = start.min(64 * 1024);
        start -= step;
        file.seek(SeekFrom::Start(start))?;
        let mut chunk = vec![0; usize::try_from(step).unwrap_or(0)];
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
    }
    let mut out = split(&buf, start);
    if let Some(n) = tail {
        let skip = out.lines.len().saturating_sub(n);
        out.lines.drain(..skip);
    }
    Ok(out)
}

/// The whole lines written at or after `offset`, up to a chunk.
pub fn read_from(path: &Path, offset: u64) -> io::Result<Lines> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Lines {
                lines: Vec::new(),
                offset,
            });
        }
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    file.take(CHUNK).read_to_end(&mut buf)?;
    Ok(split(&buf, offset))
}

/// Splits `buf` (read from `start`) into whole lines; an unfinished last
/// line is left for the next read. A leading partial line (when `buf`
/// starts mid-line) is kept: it is the start of the file or a line cut by
/// `tail`'s own chunking, which reads back to a newline.
fn split(buf: &[u8], start: u64) -> Lines {
    let end = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if end == 0 {
        return Lines {
            lines: Vec::new(),
            offset: start,
        };
    }
    let mut lines: Vec<String> = buf[..end]
        .split(|&b| b == b'\n')
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    // `split` yields an empty piece after the final newline.
    lines.pop();
    Lines {
        lines,
        offset: start + end as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn log(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn tail_gives_the_last_lines_and_keeps_an_unfinished_one_for_later() {
        let f = log("a\nb\nc\npartial");
        let all = tail(f.path(), None).unwrap();
        assert_eq!(all.lines, ["a", "b", "c"]);
        assert_eq!(all.offset, 6);
        assert_eq!(tail(f.path(), Some(2)).unwrap().lines, ["b", "c"]);
        assert_eq!(tail(f.path(), Some(0)).unwrap().lines, Vec::<String>::new());
        let next = read_from(f.path(), all.offset).unwrap();
        assert_eq!(next.lines, Vec::<String>::new());
        assert_eq!(next.offset, 6);
    }

    #[test]
    fn tail_reads_back_across_chunks() {
        let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        let f = log(&text);
        let got = tail(f.path(), Some(3)).unwrap();
        assert_eq!(got.lines, ["line 19997", "line 19998", "line 19999"]);
        assert_eq!(got.offset, text.len() as u64);
        assert_eq!(tail(f.path(), None).unwrap().lines.len(), 20_000);
    }

    #[test]
    fn a_follower_reads_each_line_once() {
        let mut f = log("one\n");
        let first = read_from(f.path(), 0).unwrap();
        assert_eq!(first.lines, ["one"]);
        f.write_all(b"two\nthr").unwrap();
        let second = read_from(f.path(), first.offset).unwrap();
        assert_eq!(second.lines, ["two"]);
        f.write_all(b"ee\n").unwrap();
        assert_eq!(read_from(f.path(), second.offset).unwrap().lines, ["three"]);
    }

    #[test]
    fn a_missing_log_is_empty() {
        let p = Path::new("/nonexistent/shoal/log");
        assert_eq!(tail(p, Some(5)).unwrap(), Lines::default());
        assert_eq!(read_from(p, 7).unwrap().offset, 7);
    }
}
