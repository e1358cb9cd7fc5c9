//! Placement preferences, as users write them for `--placement-pref`.
//!
//! Text (`spread=node.labels.zone`) enters through [`parse_preference`],
//! which never panics and says what to write when it refuses; the
//! [`PlacementPreference`] it returns is what a service spec holds. The
//! scheduler reads a spec's preferences back as [`Spread`]s, each a label
//! whose value groups the nodes.
//!
//! The form is docker's: `spread=` then a descriptor. swarmkit spreads over
//! `node.labels.KEY` (and `engine.labels.KEY`, which shoal nodes do not
//! have) and silently ignores any other descriptor; shoal refuses those
//! instead, so that a preference never silently does nothing. The prefix
//! is case-insensitive, the label name is not, as in constraints.

use thiserror::Error;

use super::constraint::{self, LABEL_PREFIX};
use crate::state::{Node, PlacementPreference};

/// What a placement preference asks for.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("placement preference `{text}`: {problem}")]
pub struct PreferenceError {
    /// The preference as written (cut to 80 characters).
    pub text: String,
    /// What is wrong with it.
    pub problem: PreferenceProblem,
}

/// What is wrong with a placement preference.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PreferenceProblem {
    /// No `=`.
    #[error("not STRATEGY=ARG; write spread=node.labels.KEY")]
    NoStrategy,
    /// A strategy other than `spread`.
    #[error("unknown strategy `{0}`; only spread is supported: spread=node.labels.KEY")]
    UnknownStrategy(String),
    /// Nothing after `spread=`.
    #[error("nothing to spread over; write spread=node.labels.KEY")]
    Empty,
    /// A descriptor that is not a node label.
    #[error(
        "cannot spread over `{0}`; only node labels can be spread over: spread=node.labels.KEY"
    )]
    NotALabel(String),
    /// A label name that is missing or has characters labels cannot have.
    #[error("{0}")]
    Label(constraint::Problem),
}

/// One preference the scheduler applies: spread over the values of the
/// node label `label`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Spread {
    label: String,
}

impl Spread {
    /// The spread a stored preference asks for; an error for one that
    /// names no node label.
    pub(super) fn of(preference: &PlacementPreference) -> Result<Spread, PreferenceError> {
        let PlacementPreference::Spread(over) = preference;
        let refuse = |problem| PreferenceError {
            text: constraint::quote(&preference.to_string()),
            problem,
        };
        if over.is_empty() {
            return Err(refuse(PreferenceProblem::Empty));
        }
        let Some(label) = constraint::strip_prefix_ignore_case(over, LABEL_PREFIX) else {
            return Err(refuse(PreferenceProblem::NotALabel(constraint::quote(
                over,
            ))));
        };
        let label = constraint::label_name(label)
            .map_err(|p| refuse(PreferenceProblem::Label(p)))?
            .to_owned();
        Ok(Spread { label })
    }

    /// The group `node` falls in: its value of the label, or `""` when it
    /// has none (those nodes are one group, as in swarmkit).
    pub(super) fn value<'n>(&self, node: &'n Node) -> &'n str {
        node.labels.get(&self.label).map_or("", String::as_str)
    }
}

/// Parses `--placement-pref` text such as `spread=node.labels.zone`.
pub fn parse_preference(text: &str) -> Result<PlacementPreference, PreferenceError> {
    let refuse = |problem| PreferenceError {
        text: constraint::quote(text),
        problem,
    };
    let Some((strategy, over)) = text.split_once('=') else {
        return Err(refuse(PreferenceProblem::NoStrategy));
    };
    if strategy != "spread" {
        return Err(refuse(PreferenceProblem::UnknownStrategy(
            constraint::quote(strategy),
        )));
    }
    let preference = PlacementPreference::Spread(over.to_owned());
    Spread::of(&preference)?;
    Ok(preference)
}

/// The spreads of a service's preferences, in order. One that names no
/// label (the API refuses those, so only a hand-made state has one) is
/// skipped, as swarmkit skips descriptors it does not know.
pub(super) fn spreads(preferences: &[PlacementPreference]) -> Vec<Spread> {
    preferences
        .iter()
        .filter_map(|p| Spread::of(p).ok())
        .collect()
}
