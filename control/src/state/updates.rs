//! Service updates: a new spec, a rollback to the previous one, and the
//! progress the orchestrator records.
//!
//! Every update keeps the spec it replaces as the previous spec. One that
//! changes the tasks (see [`ServiceSpec::changes_tasks`]) gives the
//! service a new `spec_version`, which makes its tasks outdated, and marks
//! the update as started; the orchestrator then replaces the tasks and
//! records how it goes with `SetUpdateStatus`. A rollback swaps in the
//! previous spec with its `spec_version`, so that tasks still running it
//! are current again and only the newer ones are replaced.

use super::command::Outcome;
use super::model::{Service, ServiceSpec};
use super::policy::{UpdateState, UpdateStatus};
use super::{ClusterState, StateError};
use crate::ids::ServiceId;

impl ClusterState {
    pub(super) fn update_service(
        &mut self,
        id: &ServiceId,
        version: u64,
        spec: ServiceSpec,
        at_ms: u64,
    ) -> Result<Outcome, StateError> {
        let existing = self.service_at(id, version)?;
        let mut plan = self.plan_service(id.clone(), spec, Some(existing))?;
        let service = &mut plan.service;
        service.previous_spec = Some(existing.spec.clone());
        service.previous_spec_version = existing.spec_version;
        if service.spec.changes_tasks(&existing.spec) {
            service.update_status = Some(UpdateStatus {
                state: UpdateState::Updating,
                message: "update in progress".into(),
                started_ms: at_ms,
            });
        } else {
            service.spec_version = existing.spec_version;
            service.update_status = existing.update_status.clone();
        }
        Ok(self.commit_service(plan))
    }

    pub(super) fn roll_back_service(
        &mut self,
        id: &ServiceId,
        version: u64,
        spec: &ServiceSpec,
        at_ms: u64,
    ) -> Result<Outcome, StateError> {
        let existing = self.service_at(id, version)?;
        let previous = existing
            .previous_spec
            .as_ref()
            .ok_or_else(|| StateError::NoPreviousSpec(existing.spec.name.clone()))?;
        if previous != spec {
            return Err(StateError::RollbackSpec(existing.spec.name.clone()));
        }
        let mut plan = self.plan_service(id.clone(), previous.clone(), Some(existing))?;
        let service = &mut plan.service;
        service.spec_version = existing.previous_spec_version;
        service.update_status = Some(UpdateStatus {
            state: UpdateState::RollbackStarted,
            message: "rollback started".into(),
            started_ms: at_ms,
        });
        Ok(self.commit_service(plan))
    }

    pub(super) fn set_update_status(
        &mut self,
        id: &ServiceId,
        version: u64,
        status: UpdateStatus,
    ) -> Result<Outcome, StateError> {
        self.service_at(id, version)?;
        if let Some(service) = self.services.get_mut(id) {
            service.update_status = Some(status);
        }
        Ok(Outcome::Applied)
    }

    /// The service `id`, if it is still at `version`.
    fn service_at(&self, id: &ServiceId, version: u64) -> Result<&Service, StateError> {
        let service = self
            .services
            .get(id)
            .ok_or_else(|| StateError::ServiceNotFound(id.to_string()))?;
        if service.version != version {
            return Err(StateError::StaleVersion {
                service: service.spec.name.clone(),
                current: service.version,
                given: version,
            });
        }
        Ok(service)
    }
}
