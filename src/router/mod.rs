//! Router: model groups and the choice of deployment within a group.
//!
//! Owns which deployment serves a request. Pure choice: it performs no I/O and knows nothing of
//! HTTP or caching. Today a group picks uniformly at random; scored routing comes later.

use crate::config::{Config, Deployment};
use rand::Rng;
use std::collections::HashMap;
use std::sync::Arc;

/// The deployments sharing one `model_name`.
#[derive(Debug)]
pub struct ModelGroup {
    /// The name clients use.
    pub name: String,
    /// Its deployments, in config order.
    pub deployments: Vec<Arc<Deployment>>,
}

impl ModelGroup {
    /// Picks a deployment uniformly at random.
    pub fn pick(&self) -> Option<&Arc<Deployment>> {
        match self.deployments.len() {
            0 => None,
            1 => self.deployments.first(),
            n => self.deployments.get(rand::rng().random_range(0..n)),
        }
    }
}

/// Every model group, by name.
#[derive(Debug)]
pub struct Router {
    groups: HashMap<String, ModelGroup>,
    order: Vec<String>,
}

impl Router {
    /// Builds the groups from the config.
    pub fn new(config: &Config) -> Self {
        let mut groups: HashMap<String, ModelGroup> = HashMap::new();
        let mut order = Vec::new();
        for d in &config.deployments {
            let g = groups.entry(d.model_group.clone()).or_insert_with(|| {
                order.push(d.model_group.clone());
                ModelGroup {
                    name: d.model_group.clone(),
                    deployments: Vec::new(),
                }
            });
            g.deployments.push(Arc::new(d.clone()));
        }
        Self { groups, order }
    }

    /// The group called `name`.
    pub fn group(&self, name: &str) -> Option<&ModelGroup> {
        self.groups.get(name)
    }

    /// Group names in config order.
    pub fn names(&self) -> &[String] {
        &self.order
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn picks_every_deployment_of_a_group() {
        let yaml = "model_list:\n  - {model_name: a, litellm_params: {model: mock/x}}\n  - {model_name: a, litellm_params: {model: mock/y}}\n  - {model_name: b, litellm_params: {model: mock/z}}\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, yaml).unwrap();
        let r = Router::new(&Config::load(&path).unwrap());
        assert_eq!(r.names(), ["a", "b"]);
        let g = r.group("a").unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(g.pick().unwrap().id.clone());
        }
        assert_eq!(seen.len(), 2);
        assert!(r.group("c").is_none());
    }
}
