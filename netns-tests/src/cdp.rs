//! Headless Chromium driven over the DevTools protocol (CDP), for tests of
//! web pages served inside a lab. [`Browser::launch`] starts Debian's
//! `chromium` in a test host's namespace (a process of the lab, stopped
//! with the rest of it, and by the browser's own drop), reads the DevTools
//! port from `DevToolsActivePort` in its fresh profile, opens one page
//! target and attaches to it over one WebSocket (flat sessions). Then:
//! [`Browser::navigate`], [`Browser::evaluate`] (JavaScript whose result
//! comes back as JSON) and [`Browser::screenshot`] (a PNG file).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

use crate::lab::Lab;
use crate::net::wait_until;
use crate::proc::{Proc, SpawnOpts, TERM_GRACE};

/// Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The viewport: a common laptop screen.
pub const VIEWPORT: (u32, u32) = (1366, 768);

/// How long Chromium may take to start, and a page to load.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one DevTools call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A headless Chromium with one page; see the module docs.
pub struct Browser {
    proc: Proc,
    ws: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    /// Uncaught exceptions and console errors of the page, as they came.
    errors: Vec<String>,
    /// Dropped after the process has stopped.
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("pid", &self.proc.pid)
            .finish()
    }
}

impl Browser {
    /// Starts Chromium inside `netns` with a fresh profile, its output in
    /// `<lab>/chromium.log`, and opens a blank page of [`VIEWPORT`] size.
    /// Fails, saying how to install it, when Chromium is missing.
    pub fn launch(lab: &mut Lab, netns: &str) -> Result<Browser> {
        if !Path::new(CHROMIUM).exists() {
            bail!(
                "Chromium is not installed ({CHROMIUM} is missing): run scripts/setup.sh, which \
                 installs Debian's `chromium` package"
            );
        }
        let profile = tempfile::Builder::new()
            .prefix("shoal-chromium-")
            .tempdir()
            .context("creating a profile directory for Chromium")?;
        let user_data = format!("--user-data-dir={}", profile.path().display());
        let window = format!("--window-size={},{}", VIEWPORT.0, VIEWPORT.1);
        let args = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            &window,
            &user_data,
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
        ];
        let log = lab.dir().join("chromium.log");
        let mut proc = lab.spawn_opts(
            netns,
            &args,
            &SpawnOpts {
                log: Some(log.clone()),
                ..SpawnOpts::default()
            },
        )?;
        let port_file = profile.path().join("DevToolsActivePort");
        let started = wait_until("Chromium to open its DevTools port", START_TIMEOUT, || {
            if let Some(endpoint) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|text| devtools_endpoint(&text))
            {
                return Some(Ok(endpoint));
            }
            proc.exit_status().map(Err)
        });
        let output = || std::fs::read_to_string(&log).unwrap_or_default();
        let (port, path) = match started {
            Ok(Ok(endpoint)) => endpoint,
            Ok(Err(status)) => bail!("Chromium exited ({status}); its output:\n{}", output()),
            Err(e) => {
                let _ = proc.terminate();
                bail!("{e}; Chromium's output:\n{}", output())
            }
        };

        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let connect = lab.in_netns(netns, move || {
            TcpStream::connect_timeout(&addr, CALL_TIMEOUT)
        });
        let stream = match connect {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                let _ = proc.terminate();
                return Err(e)
                    .with_context(|| format!("connecting to Chromium's DevTools at {addr}"));
            }
            Err(e) => {
                let _ = proc.terminate();
                return Err(e);
            }
        };
        stream.set_read_timeout(Some(CALL_TIMEOUT))?;
        stream.set_write_timeout(Some(CALL_TIMEOUT))?;
        let url = format!("ws://{addr}{path}");
        let ws = match tungstenite::client(url.as_str(), stream) {
            Ok((ws, _)) => ws,
            Err(e) => {
                let _ = proc.terminate();
                bail!("WebSocket handshake with Chromium's DevTools at {url}: {e}");
            }
        };
        let mut browser = Browser {
            proc,
            ws,
            session: String::new(),
            next_id: 0,
            errors: Vec::new(),
            _profile: profile,
        };
        browser.open_page()?;
        Ok(browser)
    }

    /// Opens a blank page target, attaches to it and sets it up: the
    /// viewport, and the events that report the page's errors.
    fn open_page(&mut self) -> Result<()> {
        let target = self.call_browser("Target.createTarget", json!({ "url": "about:blank" }))?;
        let target_id = target["targetId"]
            .as_str()
            .context("Target.createTarget gave no targetId")?
            .to_owned();
        let attached = self.call_browser(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        )?;
        self.session = attached["sessionId"]
            .as_str()
            .context("Target.attachToTarget gave no sessionId")?
            .to_owned();
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({
                "width": VIEWPORT.0,
                "height": VIEWPORT.1,
                "deviceScaleFactor": 1,
                "mobile": false,
            }),
        )?;
        self.call("Runtime.enable", json!({}))?;
        Ok(())
    }

    /// Loads `url` in the page and waits until its document has loaded.
    pub fn navigate(&mut self, url: &str) -> Result<()> {
        let answer = self.call("Page.navigate", json!({ "url": url }))?;
        if let Some(error) = answer["errorText"].as_str() {
            bail!("Chromium could not load {url}: {error}");
        }
        let mut last = Value::Null;
        wait_until(&format!("{url} to load"), START_TIMEOUT, || {
            match self.evaluate("[document.readyState, location.href]") {
                Ok(v) if v[0] == "complete" && v[1] != "about:blank" => Some(Ok(())),
                Ok(v) => {
                    last = v;
                    None
                }
                Err(e) => Some(Err(e)),
            }
        })
        .with_context(|| format!("last seen: {last}"))?
    }

    /// Evaluates the JavaScript `expression` in the page (awaiting it if
    /// it is a promise) and returns its value as JSON; `undefined` is
    /// `null`. An exception is an error with its description.
    pub fn evaluate(&mut self, expression: &str) -> Result<Value> {
        let answer = self.call(
            "Runtime.evaluate",
            json!({
                "expression": expression,
                "returnByValue": true,
                "awaitPromise": true,
            }),
        )?;
        if let Some(details) = answer.get("exceptionDetails") {
            bail!(
                "JavaScript `{expression}` threw: {}",
                exception_text(details)
            );
        }
        Ok(answer["result"]["value"].clone())
    }

    /// Saves what the page shows as a PNG file at `path`, and returns its
    /// bytes.
    pub fn screenshot(&mut self, path: &Path) -> Result<Vec<u8>> {
        let answer = self.call("Page.captureScreenshot", json!({ "format": "png" }))?;
        let data = answer["data"]
            .as_str()
            .context("Page.captureScreenshot gave no data")?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .context("Page.captureScreenshot's data is not base64")?;
        std::fs::write(path, &png).with_context(|| format!("writing {}", path.display()))?;
        Ok(png)
    }

    /// The pid of Chromium's first process, also its process group.
    pub fn pid(&self) -> u32 {
        self.proc.pid
    }

    /// The page's uncaught exceptions and console errors so far.
    pub fn page_errors(&self) -> &[String] {
        &self.errors
    }

    /// Calls `method` on the page's session.
    fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        let session = self.session.clone();
        self.call_on(Some(&session), method, params)
    }

    /// Calls `method` on the browser itself.
    fn call_browser(&mut self, method: &str, params: Value) -> Result<Value> {
        self.call_on(None, method, params)
    }

    /// Sends one command and reads messages until its answer, keeping the
    /// page's error events on the way.
    fn call_on(&mut self, session: Option<&str>, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            command["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(command.to_string()))
            .with_context(|| format!("sending {method} to Chromium"))?;
        loop {
            let message = self
                .ws
                .read()
                .with_context(|| format!("waiting for Chromium's answer to {method}"))?;
            let text = match message {
                Message::Text(text) => text,
                Message::Close(frame) => {
                    bail!("Chromium closed DevTools during {method}: {frame:?}")
                }
                _ => continue,
            };
            let v: Value = serde_json::from_str(text.as_str())
                .with_context(|| format!("Chromium sent something that is not JSON: {text}"))?;
            if v["id"] == json!(id) {
                if let Some(error) = v.get("error") {
                    bail!("Chromium refused {method}: {error}");
                }
                return Ok(v["result"].clone());
            }
            self.note_event(&v);
        }
    }

    fn note_event(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => self
                .errors
                .push(exception_text(&params["exceptionDetails"])),
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                let args: Vec<String> = params["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| match &a["value"] {
                        Value::String(s) => s.clone(),
                        Value::Null => a["description"].as_str().unwrap_or("?").to_owned(),
                        v => v.to_string(),
                    })
                    .collect();
                self.errors
                    .push(format!("console.error: {}", args.join(" ")));
            }
            _ => {}
        }
    }
}

impl Drop for Browser {
    /// Stops Chromium: SIGTERM to its process group, SIGKILL after a grace
    /// period, then SIGKILL to whatever of the group outlived the first
    /// process (its helpers may still be exiting), until none is left.
    fn drop(&mut self) {
        let _ = self.ws.close(None);
        let _ = self.proc.terminate();
        let pgid = self.proc.pid;
        let _ = wait_until("Chromium's processes to exit", TERM_GRACE, || {
            if group_members(pgid).is_empty() {
                return Some(());
            }
            if let Ok(pgid) = i32::try_from(pgid) {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
            None
        });
    }
}

/// The live (not zombie) processes of the process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // After the command name (in parentheses): state, ppid, pgrp.
        let Some(fields) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = fields.split_whitespace();
        let live = fields
            .next()
            .is_some_and(|state| !matches!(state, "Z" | "X"));
        if live && fields.nth(1).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
            pids.push(pid);
        }
    }
    pids
}

/// The port and browser path in a `DevToolsActivePort` file: the port on
/// the first line, `/devtools/browser/<id>` on the second. `None` while
/// the file is incomplete.
fn devtools_endpoint(text: &str) -> Option<(u16, String)> {
    let mut lines = text.lines();
    let port = lines
        .next()?
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|&p| p != 0)?;
    let path = lines.next()?.trim();
    path.starts_with("/devtools/browser/")
        .then(|| (port, path.to_owned()))
}

/// What an exception's details say, shortest useful form first.
fn exception_text(details: &Value) -> String {
    let description = details["exception"]["description"].as_str();
    let text = details["text"].as_str().unwrap_or("exception");
    match description {
        Some(d) => d.to_owned(),
        None => format!(
            "{text} at line {}, column {}",
            details["lineNumber"], details["columnNumber"]
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devtools_port_file() {
        assert_eq!(
            devtools_endpoint("38431\n/devtools/browser/4e1c-77\n"),
            Some((38431, "/devtools/browser/4e1c-77".to_owned()))
        );
        assert_eq!(devtools_endpoint(""), None);
        assert_eq!(devtools_endpoint("38431\n"), None, "written in two steps");
        assert_eq!(devtools_endpoint("0\n/devtools/browser/x\n"), None);
        assert_eq!(devtools_endpoint("x\n/devtools/browser/x\n"), None);
        assert_eq!(devtools_endpoint("38431\n/other\n"), None);
    }

    #[test]
    fn exceptions_read_as_their_description() {
        let thrown = json!({
            "text": "Uncaught",
            "exception": { "description": "TypeError: x is undefined\n    at render" },
        });
        assert_eq!(
            exception_text(&thrown),
            "TypeError: x is undefined\n    at render"
        );
        let bare = json!({ "text": "Uncaught", "lineNumber": 3, "columnNumber": 7 });
        assert_eq!(exception_text(&bare), "Uncaught at line 3, column 7");
    }
}
