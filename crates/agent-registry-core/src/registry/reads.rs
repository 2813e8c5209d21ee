//! The read use cases, answered from this replica's index: one instance, Discover pages,
//! namespaces, where calls to a logical id should go (xDS) — LIVE judged on the store's clock,
//! as the SQL views judge it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{
    InstanceFilter, InstanceStatus, NamespaceSummary, ValidationError, normalize_namespace,
    parse_uuid, validate_page_size,
};
use uuid::Uuid;

use crate::index::{Listed, Page, View};

use super::{Registry, RegistryError};

/// Discover's input after the front end read it.
#[derive(Debug, Clone)]
pub struct DiscoverQuery {
    pub filter: InstanceFilter,
    pub view: View,
    pub page_size: i32,
    pub page_token: String,
}

impl Registry {
    /// The instance `id` names as this replica knows it, or after catching up with the store's
    /// log (one registered a moment ago through another replica); `None` if no replica has it.
    /// Access checks use it: an instance's namespace and owner never change.
    pub async fn locate(&self, id: &str) -> Result<Option<Listed>, RegistryError> {
        let id: Uuid = parse_uuid("instance_id", id)?;
        if let Some(found) = self.index.get(id) {
            return Ok(Some(found));
        }
        self.catch_up().await?;
        Ok(self.index.get(id))
    }

    pub fn get_instance(&self, id: &str) -> Result<Listed, RegistryError> {
        let id: Uuid = parse_uuid("instance_id", id)?;
        self.index
            .get(id)
            .ok_or_else(|| RegistryError::NotFound(format!("instance_id {id}")))
    }

    pub fn discover(&self, q: &DiscoverQuery) -> Result<Page<Listed>, RegistryError> {
        let size = validate_page_size(q.page_size)?;
        // Stored times are the store's: LIVE is judged on its clock, as the SQL views do.
        let now = self.store.clock().now();
        Ok(self
            .index
            .discover(&q.filter, q.view, size, &q.page_token, now)?)
    }

    /// Where calls to one logical id should go now (the xDS front end's answer): its LIVE
    /// instances, or only the first of them (the ACTIVE one). While leases in the namespace
    /// cannot be judged here ([`Registry::leases_in_doubt`]) an ALIVE instance whose lease
    /// only seems to have run out is kept: dropping it would act on this replica's blindness,
    /// not on the agent's death, which the store decides (DEAD rows).
    pub fn serving(
        &self,
        namespace: &str,
        logical_id: &str,
        active_only: bool,
    ) -> Result<Serving, RegistryError> {
        let mut serving = Serving {
            instances: Vec::new(),
            recheck: None,
        };
        let Some(epoch) = self.index.current_epoch(namespace) else {
            return Ok(serving);
        };
        let now = self.store.clock().now();
        let in_doubt = self.leases_in_doubt(namespace);
        // A lease seen run out may be renewed from the store without a change, and doubt ends
        // without one: either is looked at again soon.
        let mut unsettled = in_doubt;
        let mut soonest: Option<DateTime<Utc>> = None;
        for i in self.all_of(namespace, logical_id)? {
            if i.status != InstanceStatus::Alive || i.epoch != epoch {
                continue;
            }
            if i.is_live(epoch, now) {
                let at = i.lease_expires_at();
                soonest = Some(soonest.map_or(at, |s| s.min(at)));
            } else {
                unsettled = true;
                if !in_doubt {
                    continue;
                }
            }
            serving.instances.push(i);
            if active_only {
                break;
            }
        }
        let until_expiry = soonest.map(|at| (at - now).to_std().unwrap_or_default());
        serving.recheck = match unsettled {
            true => Some(until_expiry.map_or(RECHECK, |d| d.min(RECHECK))),
            false => until_expiry,
        };
        Ok(serving)
    }

    /// Every retained instance of one logical id, all pages, in key order.
    fn all_of(&self, namespace: &str, logical_id: &str) -> Result<Vec<Listed>, RegistryError> {
        let filter = InstanceFilter {
            namespace: namespace.to_string(),
            logical_ids: [logical_id.to_string()].into(),
            ..InstanceFilter::default()
        };
        let now = self.store.clock().now();
        let (mut all, mut token) = (Vec::new(), String::new());
        loop {
            let page = self.index.discover(&filter, View::All, 1000, &token, now)?;
            all.extend(page.items);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            token = page.next_page_token;
        }
    }

    /// One namespace; `field` names the request field that carried its name.
    pub fn namespace(&self, field: &str, name: &str) -> Result<NamespaceSummary, RegistryError> {
        let name = required_namespace(field, name)?;
        self.index
            .namespace(&name, self.store.clock().now())
            .ok_or_else(|| RegistryError::NotFound(format!("namespace {name}")))
    }

    pub fn namespaces(
        &self,
        page_size: i32,
        page_token: &str,
        visible: &dyn Fn(&str) -> bool,
    ) -> Result<Page<NamespaceSummary>, RegistryError> {
        let size = validate_page_size(page_size)?;
        let now = self.store.clock().now();
        Ok(self.index.namespaces(size, page_token, now, visible)?)
    }
}

/// How soon an unsettled answer of [`Registry::serving`] is looked at again.
const RECHECK: Duration = Duration::from_secs(1);

/// Where calls to one logical id should go, and when to look again although nothing changed.
#[derive(Debug, Clone)]
pub struct Serving {
    pub instances: Vec<Listed>,
    /// `None`: only a change can alter the answer.
    pub recheck: Option<Duration>,
}

/// Admin calls name their namespace explicitly: an empty one is not silently `default`.
pub(super) fn required_namespace(field: &str, name: &str) -> Result<String, ValidationError> {
    if name.is_empty() {
        return Err(ValidationError {
            field: field.into(),
            message: "is required".into(),
        });
    }
    normalize_namespace(field, name)
}
