//! A strict reader of the OpenMetrics text format, what `/metrics` serves,
//! and a scraper for it. Every line must be a descriptor (`# HELP`, `# TYPE`,
//! `# UNIT`), a sample of the family described last, or the final `# EOF`;
//! anything else is an error naming the line. Samples come out by name and
//! label set.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;

use anyhow::{Context, Result, bail};

use crate::Lab;

/// A sample's labels, by name.
pub type Labels = BTreeMap<String, String>;

/// A parsed exposition.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Family name -> its type.
    families: BTreeMap<String, String>,
    /// Sample name -> its series.
    samples: BTreeMap<String, BTreeMap<Labels, f64>>,
}

/// Where the reader is: the family whose samples may follow (name, type),
/// the families described so far, and a family whose HELP or UNIT came
/// without its TYPE yet.
#[derive(Default)]
struct ReadState {
    current: Option<(String, String)>,
    described: BTreeSet<String>,
    announced: Option<String>,
}

/// The sample-name suffixes each family type allows.
fn suffixes(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "counter" => &["_total", "_created"],
        "gauge" | "unknown" => &[""],
        "info" => &["_info"],
        "stateset" => &[""],
        "histogram" | "gaugehistogram" => {
            &["_bucket", "_count", "_sum", "_created", "_gcount", "_gsum"]
        }
        "summary" => &["", "_count", "_sum", "_created"],
        _ => return None,
    })
}

fn is_name(s: &str, colons: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':');
    chars.next().is_some_and(ok_first) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => s.parse().ok(),
        _ => None,
    }
}

/// `name="value",...}` after the `{`; returns the labels and the rest.
fn parse_labels(mut s: &str) -> Result<(Labels, &str)> {
    let mut labels = Labels::new();
    if let Some(rest) = s.strip_prefix('}') {
        return Ok((labels, rest));
    }
    loop {
        let (name, rest) = s.split_once("=\"").context("a label without =\"")?;
        if !is_name(name, false) {
            bail!("bad label name {name:?}");
        }
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => bail!("bad escape in label {name}: {other:?}"),
                },
                Some((_, '\n')) | None => bail!("label {name} is not closed"),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            bail!("label {name} given twice");
        }
        s = &rest[end + 1..];
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        s = s
            .strip_prefix(',')
            .context("labels must be separated by `,` and closed by `}`")?;
    }
}

impl Exposition {
    /// Parses `text`, which must be a whole exposition ending in `# EOF`.
    pub fn parse(text: &str) -> Result<Exposition> {
        let body = text
            .strip_suffix("# EOF\n")
            .or_else(|| text.strip_suffix("# EOF"))
            .context("the exposition does not end with `# EOF`")?;
        let mut out = Exposition::default();
        let mut state = ReadState::default();
        for (n, line) in body.lines().enumerate() {
            out.line(line, &mut state)
                .with_context(|| format!("line {}: {line:?}", n + 1))?;
        }
        Ok(out)
    }

    fn line(&mut self, line: &str, state: &mut ReadState) -> Result<()> {
        let ReadState {
            current,
            described,
            announced,
        } = state;
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let (what, name) = (words.next().unwrap_or_default(), words.next());
            let name = name.context("a descriptor without a metric name")?;
            if !is_name(name, true) {
                bail!("bad metric name {name:?}");
            }
            let rest = words.next();
            match what {
                "TYPE" => {
                    let kind = rest.context("TYPE without a type")?;
                    suffixes(kind).with_context(|| format!("unknown type {kind:?}"))?;
                    if !described.insert(name.to_owned()) {
                        bail!("family {name} is described twice");
                    }
                    if let Some(other) = announced.take().filter(|a| a != name) {
                        bail!("HELP or UNIT of {other} followed by the TYPE of {name}");
                    }
                    self.families.insert(name.to_owned(), kind.to_owned());
                    *current = Some((name.to_owned(), kind.to_owned()));
                }
                // HELP and UNIT come before TYPE in prometheus-client's
                // output, and name the family that follows.
                "HELP" | "UNIT" => {
                    if described.contains(name) {
                        bail!("{what} for family {name} after its samples began");
                    }
                    if announced
                        .replace(name.to_owned())
                        .is_some_and(|a| a != name)
                    {
                        bail!("a HELP or UNIT without its family's TYPE");
                    }
                }
                _ => bail!("unknown descriptor {what:?}"),
            }
            return Ok(());
        }
        if line.starts_with('#') || line.is_empty() {
            bail!("neither a descriptor nor a sample");
        }
        if let Some(a) = announced {
            bail!("a sample after the HELP or UNIT of {a}, before its TYPE");
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => bail!("a sample without a value"),
        };
        let (labels, rest) = match rest.strip_prefix('{') {
            Some(after) => parse_labels(after)?,
            None => (Labels::new(), rest),
        };
        let mut fields = rest
            .strip_prefix(' ')
            .context("no space before the value")?
            .split(' ');
        let value = fields.next().unwrap_or_default();
        let value = parse_value(value).with_context(|| format!("bad value {value:?}"))?;
        if let Some(ts) = fields.next()
            && parse_value(ts).is_none()
        {
            bail!("bad timestamp {ts:?}");
        }
        if fields.next().is_some() {
            bail!("more than a value and a timestamp");
        }
        let Some((family, kind)) = current.as_ref() else {
            bail!("a sample before any `# TYPE`");
        };
        let belongs = name
            .strip_prefix(family.as_str())
            .is_some_and(|suffix| suffixes(kind).is_some_and(|s| s.contains(&suffix)));
        if !belongs {
            bail!("sample {name} is not of family {family} ({kind})");
        }
        if kind == "counter" && (value.is_nan() || value < 0.0) {
            bail!("counter {name} is {value}");
        }
        let series = self.samples.entry(name.to_owned()).or_default();
        if series.insert(labels, value).is_some() {
            bail!("series given twice");
        }
        Ok(())
    }

    /// The type of family `name`.
    pub fn kind(&self, family: &str) -> Option<&str> {
        self.families.get(family).map(String::as_str)
    }

    /// Whether any sample is called `name`.
    pub fn has(&self, name: &str) -> bool {
        self.samples.get(name).is_some_and(|s| !s.is_empty())
    }

    /// Every series of sample `name`.
    pub fn series(&self, name: &str) -> impl Iterator<Item = (&Labels, f64)> {
        self.samples
            .get(name)
            .into_iter()
            .flatten()
            .map(|(l, v)| (l, *v))
    }

    /// The sample `name` with exactly these labels.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples.get(name)?.get(&want).copied()
    }

    /// The sum of the series of `name` whose labels include `matching`.
    pub fn sum(&self, name: &str, matching: &[(&str, &str)]) -> f64 {
        self.series(name)
            .filter(|(l, _)| {
                matching
                    .iter()
                    .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Every sample name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.samples.keys().map(String::as_str)
    }
}

/// `GET http://addr/metrics` with curl from namespace `netns`, checked for
/// the OpenMetrics media type and parsed.
pub fn scrape(lab: &Lab, netns: &str, addr: SocketAddrV4) -> Result<Exposition> {
    let url = format!("http://{addr}/metrics");
    let out = lab.run_ok(
        netns,
        &[
            "curl",
            "--silent",
            "--show-error",
            "--fail",
            "--max-time",
            "10",
            "--write-out",
            "\n%{content_type}",
            &url,
        ],
    )?;
    let (text, content_type) = out
        .rsplit_once('\n')
        .with_context(|| format!("curl {url} wrote no content type"))?;
    if !content_type.starts_with("application/openmetrics-text") {
        bail!("{url} answered with content type {content_type:?}");
    }
    Exposition::parse(text).with_context(|| format!("parsing {url}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"# HELP shoal_x_packets Packets.
# TYPE shoal_x_packets counter
shoal_x_packets_total{service="web",direction="original"} 12
shoal_x_packets_total{service="web",direction="reply"} 3
# HELP shoal_up Whether.
# TYPE shoal_up gauge
shoal_up 1
# TYPE shoal_engine info
shoal_engine_info{engine="userspace",note="a \"quoted\" \\ value"} 1
# EOF
"#;

    #[test]
    fn reads_samples_by_name_and_labels() {
        let e = Exposition::parse(GOOD).unwrap();
        assert_eq!(
            e.get(
                "shoal_x_packets_total",
                &[("service", "web"), ("direction", "reply")]
            ),
            Some(3.0)
        );
        assert_eq!(e.sum("shoal_x_packets_total", &[("service", "web")]), 15.0);
        assert_eq!(e.get("shoal_up", &[]), Some(1.0));
        assert_eq!(e.kind("shoal_engine"), Some("info"));
        let (labels, _) = e.series("shoal_engine_info").next().unwrap();
        assert_eq!(labels["note"], r#"a "quoted" \ value"#);
        assert!(e.has("shoal_up") && !e.has("shoal_down"));
    }

    #[test]
    fn refuses_malformed_expositions() {
        let bad = [
            ("no EOF", GOOD.replace("# EOF\n", "")),
            ("after EOF", format!("{GOOD}shoal_up 1\n")),
            ("no TYPE", "shoal_up 1\n# EOF\n".to_owned()),
            ("blank line", GOOD.replace("shoal_up 1\n", "shoal_up 1\n\n")),
            (
                "unclosed label",
                GOOD.replace("\"web\",direction", "\"web,direction"),
            ),
            ("bad value", GOOD.replace("shoal_up 1", "shoal_up one")),
            ("no value", GOOD.replace("shoal_up 1", "shoal_up")),
            (
                "counter without _total",
                GOOD.replace(
                    "shoal_x_packets_total{service=\"web\",direction=\"reply\"}",
                    "shoal_x_packets{service=\"web\",direction=\"reply\"}",
                ),
            ),
            ("other family", GOOD.replace("shoal_up 1", "shoal_down 1")),
            (
                "twice",
                GOOD.replace("shoal_up 1\n", "shoal_up 1\nshoal_up 2\n"),
            ),
            (
                "duplicate label",
                GOOD.replace("direction=\"reply\"", "service=\"reply\""),
            ),
            (
                "bad label name",
                GOOD.replace("direction=\"reply\"", "2dir=\"reply\""),
            ),
            ("negative counter", GOOD.replace("} 12", "} -12")),
            ("unknown type", GOOD.replace("gauge", "thermometer")),
            (
                "stray comment",
                GOOD.replace("# HELP shoal_up", "#HELP shoal_up"),
            ),
            ("family twice", format!("# TYPE shoal_up gauge\n{GOOD}")),
            (
                "trailing junk",
                GOOD.replace("shoal_up 1", "shoal_up 1 2 3"),
            ),
            (
                "HELP of another family",
                GOOD.replace("# TYPE shoal_up gauge", "# TYPE shoal_upp gauge"),
            ),
        ];
        for (what, text) in bad {
            assert!(
                Exposition::parse(&text).is_err(),
                "{what} was accepted:\n{text}"
            );
        }
    }
}
