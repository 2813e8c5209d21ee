//! The read use cases, answered from this replica's index: one instance, Discover pages,
//! namespaces — LIVE judged on the store's clock, as the SQL views judge it.

use crate::domain::{
    InstanceFilter, NamespaceSummary, ValidationError, normalize_namespace, parse_uuid,
    validate_page_size,
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

    /// Now on the store's clock, on which leases are judged.
    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        self.store.clock().now()
    }

    /// Every instance of one logical id the view selects (LIVE or ACTIVE), all pages of it.
    pub fn instances_of(
        &self,
        namespace: &str,
        logical_id: &str,
        view: View,
    ) -> Result<Vec<Listed>, RegistryError> {
        let filter = InstanceFilter {
            namespace: namespace.to_string(),
            logical_ids: [logical_id.to_string()].into(),
            ..InstanceFilter::default()
        };
        let now = self.store.clock().now();
        let (mut all, mut token) = (Vec::new(), String::new());
        loop {
            let page = self.index.discover(&filter, view, 1000, &token, now)?;
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
