//! Maps a method and a percent-decoded path under `/api/hubs/{hub}/` to one data-plane
//! operation. Pure code: the table of routes lives here and nowhere else.
//!
//! Paths like `…/:send` cannot be declared as axum routes (a segment may not start with `:`),
//! and path segments arrive percent-encoded (`users/u%201`), so the hub routes them itself.

use axum::http::Method;
use percent_encoding::percent_decode_str;

use crate::registry::Permission;

/// A data-plane operation, with its decoded path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// POST `/:send`
    SendToAll,
    /// POST `/users/{user}/:send`
    SendToUser(String),
    /// POST `/connections/{id}/:send`
    SendToConnection(String),
    /// POST `/groups/{group}/:send`
    SendToGroup(String),
    /// HEAD `/connections/{id}`
    ConnectionExists(String),
    /// HEAD `/users/{user}`
    UserExists(String),
    /// HEAD `/groups/{group}`
    GroupExists(String),
    /// DELETE `/connections/{id}`
    CloseConnection(String),
    /// POST `/:closeConnections`
    CloseAll,
    /// POST `/users/{user}/:closeConnections`
    CloseUser(String),
    /// POST `/groups/{group}/:closeConnections`
    CloseGroup(String),
    /// PUT `/groups/{group}/connections/{id}`
    AddConnectionToGroup(String, String),
    /// DELETE `/groups/{group}/connections/{id}`
    RemoveConnectionFromGroup(String, String),
    /// DELETE `/connections/{id}/groups`
    RemoveConnectionFromAllGroups(String),
    /// GET `/groups/{group}/connections`
    ListGroupConnections(String),
    /// GET `/users`
    ListUsers,
    /// GET `/groups`
    ListGroups,
    /// GET `/groups/{group}/users`
    ListGroupUsers(String),
    /// GET `/users/{user}/groups`
    ListUserGroups(String),
    /// GET `/groups/{group}/messages`
    ListGroupMessages(String),
    /// PUT `/users/{user}/groups/{group}`
    AddUserToGroup(String, String),
    /// DELETE `/users/{user}/groups/{group}`
    RemoveUserFromGroup(String, String),
    /// DELETE `/users/{user}/groups`
    RemoveUserFromAllGroups(String),
    /// PUT `/permissions/{permission}/connections/{id}`
    GrantPermission(Permission, String),
    /// DELETE `/permissions/{permission}/connections/{id}`
    RevokePermission(Permission, String),
    /// HEAD `/permissions/{permission}/connections/{id}`
    CheckPermission(Permission, String),
    /// POST `/:addToGroups`
    AddToGroups,
    /// POST `/:removeFromGroups`
    RemoveFromGroups,
    /// POST `/:generateToken`
    GenerateToken,
}

/// Why a path does not name an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No such path (404).
    NotFound,
    /// The path exists with other methods (405).
    MethodNotAllowed,
    /// A path segment is malformed (400).
    BadPath(String),
    /// An unknown permission name (400).
    BadPermission(String),
}

/// Splits `/api/hubs/{hub}/rest…` into the decoded hub name and operation.
pub fn parse(method: &Method, path: &str) -> Result<(String, Op), RouteError> {
    let rest = path
        .strip_prefix("/api/hubs/")
        .ok_or(RouteError::NotFound)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut segs = Vec::new();
    for raw in rest.split('/') {
        let s = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| RouteError::BadPath(format!("segment '{raw}' is not UTF-8")))?;
        segs.push(s.into_owned());
    }
    let (hub, tail) = segs.split_first().ok_or(RouteError::NotFound)?;
    let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
    match op(method, &tail)? {
        Some(op) => Ok((hub.clone(), op)),
        None => {
            let others = [
                Method::GET,
                Method::HEAD,
                Method::PUT,
                Method::POST,
                Method::DELETE,
            ];
            if others
                .iter()
                .any(|m| m != method && matches!(op(m, &tail), Ok(Some(_))))
            {
                Err(RouteError::MethodNotAllowed)
            } else {
                Err(RouteError::NotFound)
            }
        }
    }
}

fn op(method: &Method, tail: &[&str]) -> Result<Option<Op>, RouteError> {
    let s = |x: &str| x.to_string();
    let m = method.as_str();
    Ok(Some(match (m, tail) {
        ("POST", [":send"]) => Op::SendToAll,
        ("POST", ["users", u, ":send"]) => Op::SendToUser(s(u)),
        ("POST", ["connections", c, ":send"]) => Op::SendToConnection(s(c)),
        ("POST", ["groups", g, ":send"]) => Op::SendToGroup(s(g)),
        ("HEAD", ["connections", c]) => Op::ConnectionExists(s(c)),
        ("DELETE", ["connections", c]) => Op::CloseConnection(s(c)),
        ("HEAD", ["users", u]) => Op::UserExists(s(u)),
        ("HEAD", ["groups", g]) => Op::GroupExists(s(g)),
        ("POST", [":closeConnections"]) => Op::CloseAll,
        ("POST", ["users", u, ":closeConnections"]) => Op::CloseUser(s(u)),
        ("POST", ["groups", g, ":closeConnections"]) => Op::CloseGroup(s(g)),
        ("PUT", ["groups", g, "connections", c]) => Op::AddConnectionToGroup(s(g), s(c)),
        ("DELETE", ["groups", g, "connections", c]) => Op::RemoveConnectionFromGroup(s(g), s(c)),
        ("GET", ["groups", g, "connections"]) => Op::ListGroupConnections(s(g)),
        ("GET", ["groups", g, "messages"]) => Op::ListGroupMessages(s(g)),
        ("GET", ["users"]) => Op::ListUsers,
        ("GET", ["groups"]) => Op::ListGroups,
        ("GET", ["groups", g, "users"]) => Op::ListGroupUsers(s(g)),
        ("GET", ["users", u, "groups"]) => Op::ListUserGroups(s(u)),
        ("DELETE", ["connections", c, "groups"]) => Op::RemoveConnectionFromAllGroups(s(c)),
        ("PUT", ["users", u, "groups", g]) | ("PUT", ["groups", g, "users", u]) => {
            Op::AddUserToGroup(s(u), s(g))
        }
        ("DELETE", ["users", u, "groups", g]) | ("DELETE", ["groups", g, "users", u]) => {
            Op::RemoveUserFromGroup(s(u), s(g))
        }
        ("DELETE", ["users", u, "groups"]) => Op::RemoveUserFromAllGroups(s(u)),
        ("PUT" | "DELETE" | "HEAD", ["permissions", p, "connections", c]) => {
            let perm = Permission::parse(p).ok_or_else(|| RouteError::BadPermission(s(p)))?;
            match m {
                "PUT" => Op::GrantPermission(perm, s(c)),
                "DELETE" => Op::RevokePermission(perm, s(c)),
                _ => Op::CheckPermission(perm, s(c)),
            }
        }
        ("POST", [":addToGroups"]) => Op::AddToGroups,
        ("POST", [":removeFromGroups"]) => Op::RemoveFromGroups,
        ("POST", [":generateToken"]) => Op::GenerateToken,
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any path, however malformed, is routed or refused without a panic.
        #[test]
        fn arbitrary_paths_never_panic(tail in "[a-z:%/0-9A-F]{0,40}", m in 0usize..5) {
            let methods = [Method::GET, Method::HEAD, Method::PUT, Method::POST, Method::DELETE];
            let _ = parse(&methods[m], &format!("/api/hubs/{tail}"));
        }
    }

    #[test]
    fn routes_decode_segments() {
        assert_eq!(
            parse(&Method::POST, "/api/hubs/chat/users/u%201/:send"),
            Ok(("chat".into(), Op::SendToUser("u 1".into())))
        );
        assert_eq!(
            parse(&Method::PUT, "/api/hubs/Chat/groups/g%2Fx/connections/c1"),
            Ok((
                "Chat".into(),
                Op::AddConnectionToGroup("g/x".into(), "c1".into())
            ))
        );
        assert_eq!(
            parse(
                &Method::HEAD,
                "/api/hubs/h/permissions/sendToGroup/connections/c"
            ),
            Ok((
                "h".into(),
                Op::CheckPermission(Permission::SendToGroup, "c".into())
            ))
        );
        assert_eq!(
            parse(&Method::PUT, "/api/hubs/h/permissions/fly/connections/c"),
            Err(RouteError::BadPermission("fly".into()))
        );
        assert_eq!(
            parse(&Method::GET, "/api/hubs/h/:send"),
            Err(RouteError::MethodNotAllowed)
        );
        assert_eq!(
            parse(&Method::GET, "/api/hubs/h/nothing"),
            Err(RouteError::NotFound)
        );
        assert!(matches!(
            parse(&Method::POST, "/api/hubs/h/users/%ff/:send"),
            Err(RouteError::BadPath(_))
        ));
        assert_eq!(
            parse(&Method::POST, "/api/hubs/h/:generateToken/"),
            Ok(("h".into(), Op::GenerateToken))
        );
    }
}
