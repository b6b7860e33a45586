//! `os.environ/NAME` references, resolved once while loading.

use super::validate::{ConfigIssues, PathBuf as YamlPath};
use serde_yaml_ng::Value;

/// Where environment variables come from (the process, or a map in tests).
pub trait Vars {
    /// The variable's value, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Vars for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Vars for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

const PREFIX: &str = "os.environ/";

/// Replaces every `os.environ/NAME` string in the tree by the variable's value.
/// A reference to an unset variable is an issue at that path.
pub fn resolve(value: &mut Value, path: &mut YamlPath, vars: &dyn Vars, issues: &mut ConfigIssues) {
    match value {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix(PREFIX) {
                match vars.get(name) {
                    Some(v) => *s = v,
                    None => issues.push(
                        path.to_string(),
                        format!("environment variable {name} is not set"),
                    ),
                }
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push_index(i);
                resolve(item, path, vars, issues);
                path.pop();
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                path.push_key(k.as_str().unwrap_or("?"));
                resolve(v, path, vars, issues);
                path.pop();
            }
        }
        Value::Tagged(t) => resolve(&mut t.value, path, vars, issues),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}
