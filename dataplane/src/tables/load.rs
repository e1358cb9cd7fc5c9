//! Reading the embed-mode file: YAML or JSON into [`Tables`], syntax errors
//! with line, column and key path, then validation.

use std::io;
use std::path::{Path, PathBuf};

use serde_saphyr::MessageFormatter;

use super::{Problem, Tables};

/// Why a tables file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read tables file {}; check the path given to --tables", .file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Not YAML or JSON, or not the shape of a tables file (unknown key,
    /// wrong type, missing field); `message` starts with the key path.
    #[error("{}:{line}:{column}: {message}", .file.display())]
    Syntax {
        file: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    /// Well-formed, but [`Tables::validate`] found problems: all of them.
    #[error("{}", list_problems(.file, .problems))]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

impl LoadError {
    /// The problems of an [`LoadError::Invalid`] file; empty otherwise.
    pub fn problems(&self) -> &[Problem] {
        match self {
            LoadError::Invalid { problems, .. } => problems,
            LoadError::Io { .. } | LoadError::Syntax { .. } => &[],
        }
    }
}

fn list_problems(file: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {p}", file.display()))
        .collect();
    lines.join("\n")
}

/// The name syntax errors carry when the text did not come from a file.
const NO_FILE: &str = "<input>";

impl Tables {
    /// Parses the embed-mode format (YAML, or JSON, which is YAML too)
    /// without validating it. Unknown keys are errors naming their path.
    pub fn from_yaml_str(text: &str) -> Result<Tables, LoadError> {
        parse(text, Path::new(NO_FILE))
    }

    /// Reads, parses and [validates](Tables::validate) a tables file. Checks
    /// that need the machine are left to [`Tables::check_host`].
    pub fn load(path: &Path) -> Result<Tables, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        let tables = parse(&text, path)?;
        tables.validate().map_err(|problems| LoadError::Invalid {
            file: path.to_path_buf(),
            problems,
        })?;
        Ok(tables)
    }
}

fn parse(text: &str, file: &Path) -> Result<Tables, LoadError> {
    let mut key_path = None;
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            key_path = Some(e.path().to_string());
            e.into_inner()
        })
    })
    .map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let raw = serde_saphyr::UserMessageFormatter.format_message(e.without_snippet());
        let mut message = String::new();
        // serde_path_to_error writes `.` for the root and `?` for a segment
        // it cannot name (a duplicate key, for one).
        let key_path = key_path.map(|p| p.trim_end_matches(".?").to_string());
        if let Some(path) = key_path.filter(|p| p != "." && p != "?") {
            message.push_str(&path);
            message.push_str(": ");
        }
        for c in raw.chars() {
            if c.is_control() {
                message.extend(c.escape_default());
            } else {
                message.push(c);
            }
        }
        LoadError::Syntax {
            file: file.to_path_buf(),
            line,
            column,
            message,
        }
    })
}
