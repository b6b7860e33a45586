//! Stored responses in [`Cf::Responses`]: the Response object, the items it was given (the
//! whole chain resolved, so a continuation needs one read) and its owner.
//!
//! A stored response belongs to the key that created it; virtual keys that share a cache
//! namespace share their responses too. Anyone else gets "not found", never "forbidden", so ids
//! of other tenants cannot be probed.

use crate::auth::Principal;
use crate::store::{Cf, Store, StoreError};
use crate::wire::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

/// Who may read a stored response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// `principal.key_id()` of the creator.
    pub key_id: String,
    /// The creator's cache namespace.
    pub namespace: String,
    /// Whether the creator was a virtual key (only those share by namespace).
    pub virtual_key: bool,
}

impl Owner {
    /// The owner record for a caller.
    pub fn of(p: &Principal) -> Self {
        Self {
            key_id: p.key_id().to_string(),
            namespace: p.namespace().to_string(),
            virtual_key: matches!(p, Principal::Virtual(_)),
        }
    }

    /// Whether `p` may read, chain from or delete the response.
    pub fn allows(&self, p: &Principal) -> bool {
        if self.key_id == p.key_id() {
            return true;
        }
        self.virtual_key && matches!(p, Principal::Virtual(_)) && self.namespace == p.namespace()
    }
}

/// One stored response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// Who may see it.
    pub owner: Owner,
    /// The Response object as returned to the client.
    pub response: Value,
    /// Every item the model was given: the chain behind `previous_response_id`, then this
    /// request's input.
    pub input_items: Vec<Value>,
}

impl StoredResponse {
    /// The response id.
    pub fn id(&self) -> &str {
        self.response
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// Reads and writes stored responses.
#[derive(Debug, Clone)]
pub struct ResponseStore {
    store: Arc<Store>,
}

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt {
        cf: Cf::Responses.name(),
        detail,
    }
}

/// Runs a store call on the blocking pool (RocksDB may touch the disk).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Engine(format!("storage task failed: {e}")))?
}

impl ResponseStore {
    /// Responses kept in `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// Writes (or replaces) a response.
    pub fn put(&self, r: &StoredResponse) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(r).map_err(|e| corrupt(format!("cannot encode: {e}")))?;
        self.store.put(Cf::Responses, r.id().as_bytes(), &bytes)
    }

    /// The response `id` if `who` may see it.
    pub fn get(&self, id: &str, who: &Principal) -> Result<Option<StoredResponse>, StoreError> {
        let Some(bytes) = self.store.get(Cf::Responses, id.as_bytes())? else {
            return Ok(None);
        };
        let r: StoredResponse =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("response {id}: {e}")))?;
        Ok(r.owner.allows(who).then_some(r))
    }

    /// Deletes the response `id` if `who` may see it; whether it did.
    pub fn delete(&self, id: &str, who: &Principal) -> Result<bool, StoreError> {
        if self.get(id, who)?.is_none() {
            return Ok(false);
        }
        self.store.delete(Cf::Responses, id.as_bytes())?;
        Ok(true)
    }

    /// [`ResponseStore::put`] off the async workers.
    pub async fn put_async(&self, r: StoredResponse) -> Result<(), StoreError> {
        let this = self.clone();
        blocking(move || this.put(&r)).await
    }

    /// [`ResponseStore::get`] off the async workers.
    pub async fn get_async(
        &self,
        id: &str,
        who: &Principal,
    ) -> Result<Option<StoredResponse>, StoreError> {
        let (this, id, who) = (self.clone(), id.to_string(), who.clone());
        blocking(move || this.get(&id, &who)).await
    }

    /// [`ResponseStore::delete`] off the async workers.
    pub async fn delete_async(&self, id: &str, who: &Principal) -> Result<bool, StoreError> {
        let (this, id, who) = (self.clone(), id.to_string(), who.clone());
        blocking(move || this.delete(&id, &who)).await
    }
}

/// Query of `GET /v1/responses/{id}/input_items`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    /// `asc` or `desc` (default `desc`, newest first).
    pub order: Option<String>,
    /// 1 to 100 (default 20).
    pub limit: Option<i64>,
    /// Item id to list after, in the chosen order.
    pub after: Option<String>,
}

/// Default page size of the input item list.
const DEFAULT_LIMIT: usize = 20;
/// Largest page size of the input item list.
const MAX_LIMIT: i64 = 100;

/// One page of a response's input items as OpenAI's list object.
pub fn list_items(items: &[Value], q: &ListQuery) -> Result<Value, FieldError> {
    let desc = match q.order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(FieldError {
                param: "order".into(),
                message: format!("invalid value for 'order': \"{other}\" (expected asc or desc)"),
            })
        }
    };
    let limit = match q.limit {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n as usize,
        Some(n) => {
            return Err(FieldError {
                param: "limit".into(),
                message: format!("invalid value for 'limit': {n} (expected 1 to {MAX_LIMIT})"),
            })
        }
    };
    let mut ordered: Vec<&Value> = items.iter().collect();
    if desc {
        ordered.reverse();
    }
    let start = match &q.after {
        Some(after) => ordered
            .iter()
            .position(|i| i.get("id").and_then(Value::as_str) == Some(after))
            .map_or(ordered.len(), |p| p + 1),
        None => 0,
    };
    let rest = &ordered[start.min(ordered.len())..];
    let page: Vec<Value> = rest.iter().take(limit).map(|v| (*v).clone()).collect();
    let id_of = |v: Option<&Value>| v.and_then(|v| v.get("id")).cloned().unwrap_or(Value::Null);
    Ok(json!({
        "object": "list",
        "data": page,
        "first_id": id_of(page.first()),
        "last_id": id_of(page.last()),
        "has_more": rest.len() > limit,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::VirtualKey;

    fn vkey(id: &str, ns: Option<&str>) -> Principal {
        let k: VirtualKey = serde_json::from_value(json!({
            "id": id, "alias": null, "models": [], "rpm": null, "tpm": null,
            "max_parallel_requests": null, "max_budget": null, "budget_duration_secs": null,
            "expires_at": null, "cache_namespace": ns, "cache_policy": {"mode": "default"},
            "metadata": {}, "user_id": null, "team_id": null, "admin": false, "created_at": 0,
            "revoked_at": null
        }))
        .unwrap_or_else(|e| panic!("VirtualKey fields changed: {e}"));
        Principal::Virtual(Arc::new(k))
    }

    #[test]
    fn only_the_owner_or_its_namespace_sees_a_response() {
        let a = vkey("key_a", None);
        let b = vkey("key_b", None);
        let team1 = vkey("key_t1", Some("team"));
        let team2 = vkey("key_t2", Some("team"));
        let owner = Owner::of(&a);
        assert!(owner.allows(&a));
        assert!(!owner.allows(&b));
        assert!(!owner.allows(&Principal::Master));
        assert!(!owner.allows(&Principal::Open));
        assert!(Owner::of(&team1).allows(&team2));
        let master = Owner::of(&Principal::Master);
        assert!(master.allows(&Principal::Master));
        assert!(!master.allows(&a));
        // A virtual key whose namespace is "default" does not reach the master's responses.
        assert!(!master.allows(&vkey("key_d", Some("default"))));
    }

    #[test]
    fn put_get_delete_respect_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResponseStore::new(Arc::new(Store::open(dir.path()).unwrap()));
        let a = vkey("key_a", None);
        let b = vkey("key_b", None);
        let r = StoredResponse {
            owner: Owner::of(&a),
            response: json!({"id": "resp_1", "object": "response"}),
            input_items: vec![json!({"id": "msg_1", "type": "message"})],
        };
        store.put(&r).unwrap();
        assert_eq!(store.get("resp_1", &a).unwrap(), Some(r.clone()));
        assert_eq!(store.get("resp_1", &b).unwrap(), None);
        assert_eq!(store.get("resp_2", &a).unwrap(), None);
        assert!(!store.delete("resp_1", &b).unwrap());
        assert!(store.get("resp_1", &a).unwrap().is_some());
        assert!(store.delete("resp_1", &a).unwrap());
        assert_eq!(store.get("resp_1", &a).unwrap(), None);
        assert!(!store.delete("resp_1", &a).unwrap());
    }

    fn items(n: usize) -> Vec<Value> {
        (0..n).map(|i| json!({"id": format!("msg_{i}")})).collect()
    }

    #[test]
    fn input_items_pages() {
        let all = items(5);
        let page = list_items(&all, &ListQuery::default()).unwrap();
        assert_eq!(page["object"], "list");
        assert_eq!(page["first_id"], "msg_4");
        assert_eq!(page["last_id"], "msg_0");
        assert_eq!(page["has_more"], false);
        let q = ListQuery {
            order: Some("asc".into()),
            limit: Some(2),
            after: Some("msg_1".into()),
        };
        let page = list_items(&all, &q).unwrap();
        assert_eq!(page["data"], json!([{"id": "msg_2"}, {"id": "msg_3"}]));
        assert_eq!(page["has_more"], true);
        let q = ListQuery {
            limit: Some(0),
            ..Default::default()
        };
        assert_eq!(list_items(&all, &q).unwrap_err().param, "limit");
        let q = ListQuery {
            order: Some("up".into()),
            ..Default::default()
        };
        assert_eq!(list_items(&all, &q).unwrap_err().param, "order");
        let page = list_items(&[], &ListQuery::default()).unwrap();
        assert_eq!(page["first_id"], Value::Null);
        assert_eq!(page["data"], json!([]));
    }
}
