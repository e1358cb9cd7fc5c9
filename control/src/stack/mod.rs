//! `shoal stack deploy -c FILE NAME`: a compose v3 file, checked as a
//! whole, turned into the networks and services the managers create.
//!
//! Text enters through [`plan`], which does no I/O; a [`StackPlan`] comes
//! out (the same [`NetworkOptions`] and [`ServiceOptions`] that `network
//! create` and `service create` take), or every problem found, each with
//! its file, line, column and key path ([`ComposeErrors`]). Nothing in a
//! file with errors is planned, so nothing of it is deployed.
//!
//! Names follow `docker stack deploy`: service `api` of stack `web` is
//! `web_api`, network `back` is `web_back` (an external network keeps its
//! own name, as does one with a `name:`), and services that list no
//! networks join `web_default`, which the plan then holds.
//!
//! Every key of the compose v3 schema is one of three kinds:
//! - read: `version`, `services`, `networks`; per service `image`,
//!   `command`, `entrypoint` (over the image's as docker does; without an
//!   image, `entrypoint` then `command` run on the node itself), `deploy`
//!   (`mode`, `replicas`, `endpoint_mode`, `placement.constraints`,
//!   `placement.preferences`, `placement.max_replicas_per_node`,
//!   `update_config`, `rollback_config`,
//!   `restart_policy`), `environment`, `healthcheck`, `networks`, `ports`,
//!   `stop_signal`, `stop_grace_period`; per network `external`, `name`,
//!   `driver`, `attachable`, `ipam`, `driver_opts`; `deploy.labels` and a
//!   network's `labels` label the service and the network.
//! - ignored, with a warning in [`StackPlan::warnings`]: what `docker stack
//!   deploy` ignores too (`build`, `restart`, `depends_on`,
//!   `container_name`, `links`, `privileged`, ...), and what only annotates
//!   (a service's container `labels`, network `aliases`, and a non-zero
//!   `max_failure_ratio`).
//! - refused, with an error that says so: everything else Swarm would
//!   apply and shoal cannot (`volumes`, `secrets`, `configs`, `user`,
//!   `working_dir`, `hostname`, `logging`,
//!   `deploy.resources`, ...), so that a deployed
//!   stack never silently does less than its file says.
//!
//! A key outside the schema is an error, except `x-` extension keys, which
//! are skipped; anchors, aliases and `<<` merge keys work anywhere.
//! Variable substitution is refused (`$NAME`, `${NAME}`: shoal sees no
//! client environment), and `$$` is a literal `$`, as in compose.

mod check;
mod deploy;
mod document;
mod health;
mod network;
mod ports;
mod service;
#[cfg(test)]
mod tests;
mod words;
pub use words::split_command;
mod yaml;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::swarm::{NetworkOptions, ServiceOptions};

/// What a compose file asks the managers to create.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackPlan {
    /// The stack's name.
    pub stack: String,
    /// The networks its services use, in the file's order; the implicit
    /// `default` network last.
    pub networks: Vec<StackNetwork>,
    /// Its services, in the file's order.
    pub services: Vec<StackService>,
    /// What the file says that shoal ignores, one line each, located.
    pub warnings: Vec<String>,
}

/// One network of a stack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackNetwork {
    /// Its name in the file.
    pub short: String,
    /// Made outside the stack: it must exist, and the stack never removes
    /// it.
    pub external: bool,
    /// `network create` options; `name` is `{stack}_{short}`, the `name:`
    /// the file gives, or for an external network the name it has.
    pub options: NetworkOptions,
}

/// One service of a stack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackService {
    /// Its name in the file, by which the stack's other services find it.
    pub short: String,
    /// `service create` options; `name` is `{stack}_{short}` and
    /// `networks` holds full network names.
    pub options: ServiceOptions,
}

/// Everything wrong with a compose file, in the file's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposeErrors(pub Vec<ComposeError>);

/// One problem in a compose file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposeError {
    /// The file as the user named it.
    pub file: String,
    /// 1-based; 0 when the problem is not in the file (the stack's name).
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// Where in the document, e.g. `services.api.deploy.replicas`; empty
    /// for the document itself.
    pub path: String,
    /// What is wrong, and what to do about it where that is not obvious.
    pub message: String,
}

impl fmt::Display for ComposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ComposeError {}

impl fmt::Display for ComposeErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ComposeErrors {}

/// Parses and checks a compose file and turns it into what the managers
/// create. `file` only names the file in messages; `stack` is the stack's
/// name. Either every check passed and the plan is complete, or the
/// errors list every problem found.
pub fn plan(file: &str, text: &str, stack: &str) -> Result<StackPlan, ComposeErrors> {
    let mut check = check::Check::new(file, text);
    if let Err(why) = words::check_stack_name(stack) {
        check.error_outside(format!(
            "stack name `{}` is not valid: {why}",
            words::cut(stack)
        ));
    }
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            check.syntax_error(e);
            return Err(check.into_errors());
        }
    };
    let plan = document::document(&mut check, &root, stack);
    let (errors, warnings) = check.finish();
    if errors.0.is_empty() {
        Ok(StackPlan { warnings, ..plan })
    } else {
        Err(errors)
    }
}
