//! A2A push-notification settings: the four `*TaskPushNotificationConfig` methods (and their
//! v0.3 names), and the checks a webhook address passes before the hub will call it.
//!
//! A setting is an A2A v1.0 `TaskPushNotificationConfig` (`id`, `taskId`, `url`, `token`,
//! `authentication{scheme, credentials}`), stored beside its task by the bus transport so every
//! hub node on the same Redis sees it. Answers never carry `authentication.credentials` back:
//! whoever may read a task may list its settings, and the credential is the receiver's secret.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::codes;
use super::rpc::{RpcError, readable};
use crate::bus::{Bridge, Grants};

/// Settings one task may hold.
pub const MAX_CONFIGS_PER_TASK: usize = 10;
/// Longest webhook URL.
const MAX_URL_LEN: usize = 2048;
/// Longest notification token.
const MAX_TOKEN_LEN: usize = 1024;
/// Longest credential.
const MAX_CREDENTIALS_LEN: usize = 4096;
/// Longest setting id.
const MAX_ID_LEN: usize = 128;

/// How the hub authenticates to the webhook: sent as `Authorization: <scheme> <credentials>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticationInfo {
    /// An HTTP authentication scheme (`Bearer`, `Basic`, ...).
    pub scheme: String,
    /// The credentials in that scheme's format.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credentials: String,
}

/// One stored setting: an A2A v1.0 `TaskPushNotificationConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushConfig {
    /// The setting's id within its task.
    pub id: String,
    /// The task it belongs to.
    pub task_id: String,
    /// Where notifications are POSTed.
    pub url: String,
    /// Sent as `X-A2A-Notification-Token`, for the receiver to check.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// How the hub authenticates to the receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<AuthenticationInfo>,
}

impl PushConfig {
    /// The setting as an answer shows it: without the credential.
    fn shown(&self) -> Value {
        let mut v = json!({"id": self.id, "taskId": self.task_id, "url": self.url});
        if !self.token.is_empty() {
            v["token"] = json!(self.token);
        }
        if let Some(a) = &self.authentication {
            v["authentication"] = json!({"scheme": a.scheme});
        }
        v
    }
}

/// Why a webhook address is refused.
pub fn check_url(url: &str, allow_private: bool) -> Result<url::Url, String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("url is longer than {MAX_URL_LEN} bytes"));
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("url is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "url scheme '{}' is not http or https",
            parsed.scheme()
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("url must not carry credentials; use authentication".into());
    }
    let literal = match parsed.host() {
        None => return Err("url has no host".into()),
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
    };
    if let Some(ip) = literal
        && !allow_private
        && !is_public(ip)
    {
        return Err(format!(
            "url host {ip} is a loopback, private or link-local address \
             (allowed only with [bus] push_allow_private = true)"
        ));
    }
    Ok(parsed)
}

/// Whether `ip` is an address on the public internet (not loopback, private, link-local,
/// shared, multicast or unspecified), so that a webhook cannot reach into the hub's network.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Whether `id` is usable as a setting id (the bus's name rules).
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

/// Whether `s` fits in an HTTP header value (visible ASCII and spaces).
fn header_safe(s: &str) -> bool {
    s.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

fn bad(msg: impl Into<String>) -> RpcError {
    RpcError::new(codes::INVALID_PARAMS, msg)
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Reads a setting from Create's params: the v1.0 `TaskPushNotificationConfig`, or the v0.3
/// `{taskId, pushNotificationConfig: {id, url, token, authentication: {schemes, credentials}}}`.
pub fn parse(params: &Value, task_id: &str, allow_private: bool) -> Result<PushConfig, RpcError> {
    let body = params.get("pushNotificationConfig").unwrap_or(params);
    let url = str_of(body, "url").ok_or_else(|| bad("url is required"))?;
    check_url(url, allow_private).map_err(bad)?;
    let id = str_of(body, "id")
        .or_else(|| str_of(params, "configId"))
        .unwrap_or(task_id)
        .to_string();
    if !valid_id(&id) {
        return Err(bad(format!(
            "id must be 1-{MAX_ID_LEN} characters from A-Z a-z 0-9 . _ - :"
        )));
    }
    let token = str_of(body, "token").unwrap_or_default().to_string();
    if token.len() > MAX_TOKEN_LEN || !header_safe(&token) {
        return Err(bad(format!(
            "token must be at most {MAX_TOKEN_LEN} printable ASCII characters"
        )));
    }
    let authentication = match body.get("authentication") {
        None | Some(Value::Null) => None,
        Some(a) => {
            let scheme = str_of(a, "scheme")
                .or_else(|| {
                    a.get("schemes")
                        .and_then(Value::as_array)
                        .and_then(|s| s.first())
                        .and_then(Value::as_str)
                })
                .ok_or_else(|| bad("authentication.scheme is required"))?;
            let token68 = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if scheme.len() > 64 || !scheme.bytes().all(token68) {
                return Err(bad(
                    "authentication.scheme is not an HTTP authentication scheme",
                ));
            }
            let credentials = str_of(a, "credentials").unwrap_or_default();
            if credentials.len() > MAX_CREDENTIALS_LEN || !header_safe(credentials) {
                return Err(bad(format!(
                    "authentication.credentials must be at most {MAX_CREDENTIALS_LEN} printable ASCII characters"
                )));
            }
            if credentials.is_empty() {
                return Err(bad("authentication.credentials is required with a scheme"));
            }
            Some(AuthenticationInfo {
                scheme: scheme.to_string(),
                credentials: credentials.to_string(),
            })
        }
    };
    Ok(PushConfig {
        id,
        task_id: task_id.to_string(),
        url: url.to_string(),
        token,
        authentication,
    })
}

/// The task a push-config call names: `taskId` (v1.0), else `id` (v0.3 Get/List/Delete) or
/// a `parent`/`name` resource (`tasks/{id}[/pushNotificationConfigs/{config}]`).
fn task_of(params: &Value) -> Result<String, RpcError> {
    if let Some(t) = str_of(params, "taskId") {
        return Ok(t.to_string());
    }
    for key in ["parent", "name"] {
        if let Some(rest) = str_of(params, key).and_then(|n| n.strip_prefix("tasks/")) {
            return Ok(rest.split('/').next().unwrap_or_default().to_string());
        }
    }
    if (params.get("pushNotificationConfigId").is_some() || params.get("url").is_none())
        && let Some(t) = str_of(params, "id")
    {
        return Ok(t.to_string());
    }
    Err(bad("taskId is required"))
}

/// The setting a Get/Delete names: `id` (v1.0) or `pushNotificationConfigId` (v0.3).
fn config_of(params: &Value, task_id: &str) -> String {
    str_of(params, "pushNotificationConfigId")
        .or_else(|| {
            // In v0.3, `id` is the task; in v1.0, `taskId` names the task and `id` the setting.
            params.get("taskId").and_then(|_| str_of(params, "id"))
        })
        .unwrap_or(task_id)
        .to_string()
}

/// Stores a setting under its task, within the bound of settings per task.
pub async fn store(bridge: &Bridge, config: &PushConfig) -> Result<(), RpcError> {
    let doc =
        serde_json::to_string(config).map_err(|e| RpcError::new(codes::INTERNAL, e.to_string()))?;
    let stored = bridge
        .bus
        .transport()
        .push_config_put(&config.task_id, &config.id, &doc, MAX_CONFIGS_PER_TASK)
        .await
        .map_err(|e| RpcError::new(codes::INTERNAL, e.to_string()))?;
    if !stored {
        return Err(bad(format!(
            "task {} already has {MAX_CONFIGS_PER_TASK} push notification configs",
            config.task_id
        )));
    }
    Ok(())
}

/// `CreateTaskPushNotificationConfig`.
pub async fn create(bridge: &Bridge, grants: &Grants, params: &Value) -> Result<Value, RpcError> {
    let task_id = task_of(params)?;
    let rec = readable(bridge, grants, &json!({"id": task_id})).await?;
    let allow_private = bridge.app.config.bus.push_allow_private;
    let config = parse(params, &rec.task.id, allow_private)?;
    store(bridge, &config).await?;
    Ok(config.shown())
}

/// Every setting of a task, decoded.
pub async fn configs_of(bridge: &Bridge, task_id: &str) -> Result<Vec<PushConfig>, RpcError> {
    let stored = bridge
        .bus
        .transport()
        .push_configs(task_id)
        .await
        .map_err(|e| RpcError::new(codes::INTERNAL, e.to_string()))?;
    Ok(stored
        .into_iter()
        .filter_map(|(_, doc)| serde_json::from_str(&doc).ok())
        .collect())
}

/// `GetTaskPushNotificationConfig`.
pub async fn get(bridge: &Bridge, grants: &Grants, params: &Value) -> Result<Value, RpcError> {
    let task_id = task_of(params)?;
    let rec = readable(bridge, grants, &json!({"id": task_id})).await?;
    let id = config_of(params, &rec.task.id);
    configs_of(bridge, &rec.task.id)
        .await?
        .into_iter()
        .find(|c| c.id == id)
        .map(|c| c.shown())
        .ok_or_else(|| {
            bad(format!(
                "task {} has no push notification config '{id}'",
                rec.task.id
            ))
        })
}

/// `ListTaskPushNotificationConfigs`.
pub async fn list(bridge: &Bridge, grants: &Grants, params: &Value) -> Result<Value, RpcError> {
    let task_id = task_of(params)?;
    let rec = readable(bridge, grants, &json!({"id": task_id})).await?;
    let configs: Vec<Value> = configs_of(bridge, &rec.task.id)
        .await?
        .iter()
        .map(PushConfig::shown)
        .collect();
    Ok(json!({"configs": configs, "nextPageToken": ""}))
}

/// `DeleteTaskPushNotificationConfig`.
pub async fn delete(bridge: &Bridge, grants: &Grants, params: &Value) -> Result<Value, RpcError> {
    let task_id = task_of(params)?;
    let rec = readable(bridge, grants, &json!({"id": task_id})).await?;
    let id = config_of(params, &rec.task.id);
    let removed = bridge
        .bus
        .transport()
        .push_config_delete(&rec.task.id, &id)
        .await
        .map_err(|e| RpcError::new(codes::INTERNAL, e.to_string()))?;
    if !removed {
        return Err(bad(format!(
            "task {} has no push notification config '{id}'",
            rec.task.id
        )));
    }
    Ok(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_addresses_are_checked() {
        assert!(check_url("https://example.com/hook", false).is_ok());
        assert!(check_url("http://93.184.216.34:8080/h", false).is_ok());
        for refused in [
            "ftp://example.com/x",
            "file:///etc/passwd",
            "https://user:pw@example.com/",
            "http://127.0.0.1:9/x",
            "http://10.1.2.3/x",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/x",
            "http://[fd00::1]/x",
            "http://[::ffff:192.168.0.1]/x",
            "http://100.64.0.1/x",
            "http://0.0.0.0/x",
            "not a url",
        ] {
            assert!(check_url(refused, false).is_err(), "{refused} accepted");
        }
        assert!(check_url("http://127.0.0.1:9/x", true).is_ok());
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(check_url(&long, false).is_err());
    }

    #[test]
    fn settings_parse_in_both_versions() {
        let v1 = json!({"taskId": "t1", "id": "c1", "url": "https://example.com/h",
            "token": "tok", "authentication": {"scheme": "Bearer", "credentials": "secret"}});
        let c = parse(&v1, "t1", false).expect("v1");
        assert_eq!((c.id.as_str(), c.token.as_str()), ("c1", "tok"));
        assert_eq!(
            c.authentication.as_ref().map(|a| a.scheme.as_str()),
            Some("Bearer")
        );
        let shown = c.shown();
        assert!(
            shown["authentication"].get("credentials").is_none(),
            "{shown}"
        );
        let v03 = json!({"taskId": "t1", "pushNotificationConfig": {"url": "https://example.com/h",
            "authentication": {"schemes": ["Basic"], "credentials": "dTpw"}}});
        let c = parse(&v03, "t1", false).expect("v0.3");
        assert_eq!(c.id, "t1", "a setting without id takes the task's");
        assert_eq!(c.authentication.map(|a| a.scheme), Some("Basic".into()));
        for bad in [
            json!({"taskId": "t1"}),
            json!({"taskId": "t1", "url": "https://e.com/", "token": "a\nb"}),
            json!({"taskId": "t1", "url": "https://e.com/", "id": "a b"}),
            json!({"taskId": "t1", "url": "https://e.com/", "authentication": {"scheme": "Bea rer", "credentials": "x"}}),
            json!({"taskId": "t1", "url": "https://e.com/", "authentication": {"scheme": "Bearer"}}),
        ] {
            assert!(parse(&bad, "t1", false).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn calls_name_task_and_setting() {
        let v1 = json!({"taskId": "t1", "id": "c1"});
        assert_eq!(task_of(&v1).ok().as_deref(), Some("t1"));
        assert_eq!(config_of(&v1, "t1"), "c1");
        let v03 = json!({"id": "t1", "pushNotificationConfigId": "c2"});
        assert_eq!(task_of(&v03).ok().as_deref(), Some("t1"));
        assert_eq!(config_of(&v03, "t1"), "c2");
        let v03_list = json!({"id": "t1"});
        assert_eq!(task_of(&v03_list).ok().as_deref(), Some("t1"));
        assert_eq!(config_of(&v03_list, "t1"), "t1");
        let resource = json!({"name": "tasks/t9/pushNotificationConfigs/c"});
        assert_eq!(task_of(&resource).ok().as_deref(), Some("t9"));
        assert!(task_of(&json!({})).is_err());
    }
}
