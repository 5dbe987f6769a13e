//! REST failures as callers see them: 401 for every kind of bad token (with a JSON reason and
//! `x-ms-error-code`), 400 for bad parameters and filters, 413 for oversize bodies, 415 for
//! unknown content types, 404/405 for unknown routes; and key rotation (both keys accepted).

use axum::http::Method;
use base64::Engine;
use nerve_hub::auth::{Audience, Claims, now_secs};
use serde_json::json;

use crate::harness::Hub;

const PRIMARY: &str = "rest-primary-key";
const SECONDARY: &str = "rest-secondary-key";

fn claims(aud: &str, exp: u64) -> Claims {
    Claims {
        aud: Some(Audience::One(aud.to_string())),
        exp,
        iat: Some(now_secs()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_401_with_a_json_reason() {
    let n = Hub::start_with(&[PRIMARY, SECONDARY], "", &[]);
    let rest = n.rest(0);
    let url = format!("{}/api/hubs/chat/:send?api-version=2024-12-01", rest.base);
    let body = || Some(("text/plain", b"x".to_vec()));
    let call = |token: Option<String>| {
        let rest = &rest;
        let url = url.clone();
        async move {
            rest.call_with_token(Method::POST, &url, body(), token.as_deref())
                .await
        }
    };

    // Accepted: aud with or without the query (the SDKs include it), any case, either key.
    assert_eq!(call(Some(rest.token(&url))).await.status, 202);
    let no_query = url
        .split('?')
        .next()
        .expect("path")
        .to_uppercase()
        .replace("HTTP://", "http://");
    assert_eq!(call(Some(rest.token(&no_query))).await.status, 202);
    assert_eq!(call(Some(n.rest(1).token(&url))).await.status, 202);

    let expired = rest.token_with(claims(&url, now_secs() - 3600));
    let wrong_aud = rest.token(&format!("{}/api/hubs/other/:send", rest.base));
    let wrong_host = rest.token("http://elsewhere:1/api/hubs/chat/:send");
    let client_aud = rest.token(&format!("{}/client/hubs/chat", rest.base));
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let unsigned = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(serde_json::to_vec(&claims(&url, now_secs() + 600)).expect("claims"))
    );
    let other_key = Hub::start_with(&["someone-else"], "", &[]);
    let foreign = other_key.rest(0).token(&url);
    drop(other_key);
    for (what, token) in [
        ("missing", None),
        ("expired", Some(expired)),
        ("wrong audience", Some(wrong_aud)),
        ("wrong host", Some(wrong_host)),
        ("client audience", Some(client_aud)),
        ("alg none", Some(unsigned)),
        ("foreign key", Some(foreign)),
        ("garbage", Some("not.a.jwt".to_string())),
    ] {
        let r = call(token).await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_eq!(r.json()["code"], "Unauthorized", "{what}");
        assert!(!r.json()["message"].as_str().unwrap_or_default().is_empty());
        assert_eq!(
            r.headers
                .get("x-ms-error-code")
                .and_then(|v| v.to_str().ok()),
            Some("Unauthorized")
        );
    }
    // Every route is guarded, including HEAD and GET ones.
    for (m, p) in [
        (Method::HEAD, "/api/hubs/chat/connections/c"),
        (Method::GET, "/api/hubs/chat/groups/g/connections"),
        (Method::POST, "/api/hubs/chat/:generateToken"),
        (Method::DELETE, "/api/hubs/chat/users/u/groups"),
    ] {
        let u = format!("{}{p}", rest.base);
        assert_eq!(
            rest.call_with_token(m, &u, None, None).await.status,
            401,
            "{p}"
        );
    }
}

/// A request (method, path, optional content type and body) and its expected status.
type Case = (Method, &'static str, Option<(&'static str, Vec<u8>)>, u16);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_bodies_and_routes() {
    let n = Hub::start_with(&[PRIMARY], "", &[]);
    let rest = n.rest(0);
    let text = || Some(("text/plain", b"x".to_vec()));
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/api/hubs/chat/:send?messageTtlSeconds=301",
            text(),
            400,
        ),
        (
            Method::POST,
            "/api/hubs/chat/:send?messageTtlSeconds=-1",
            text(),
            400,
        ),
        (
            Method::POST,
            "/api/hubs/chat/:send?messageTtlSeconds=0",
            text(),
            202,
        ),
        (
            Method::POST,
            "/api/hubs/chat/:send?filter=userId%20eq",
            text(),
            400,
        ),
        (
            Method::POST,
            "/api/hubs/chat/:send?filter=nickname%20eq%20%27a%27",
            text(),
            400,
        ),
        (Method::POST, "/api/hubs/1chat/:send", text(), 400),
        (Method::POST, "/api/hubs/chat/groups/%20/:send", text(), 400),
        (
            Method::POST,
            "/api/hubs/chat/:send",
            Some(("image/png", vec![1])),
            415,
        ),
        (Method::POST, "/api/hubs/chat/:send", None, 415),
        (
            Method::POST,
            "/api/hubs/chat/:send",
            Some(("application/json", b"{".to_vec())),
            400,
        ),
        (
            Method::POST,
            "/api/hubs/chat/:send",
            Some(("text/plain", vec![0xff, 0xfe])),
            400,
        ),
        (
            Method::GET,
            "/api/hubs/chat/groups/g/connections?maxpagesize=0",
            None,
            400,
        ),
        (
            Method::GET,
            "/api/hubs/chat/groups/g/connections?maxpagesize=201",
            None,
            400,
        ),
        (
            Method::GET,
            "/api/hubs/chat/groups/g/connections?maxpagesize=200",
            None,
            200,
        ),
        (Method::GET, "/api/hubs/chat/:send", None, 405),
        (Method::POST, "/api/hubs/chat/nothing-here", None, 404),
        (
            Method::PUT,
            "/api/hubs/chat/permissions/fly/connections/c",
            None,
            400,
        ),
        (
            Method::PUT,
            "/api/hubs/chat/groups/%20/connections/c",
            None,
            400,
        ),
        (
            Method::POST,
            "/api/hubs/chat/:addToGroups",
            Some(("application/json", b"[]".to_vec())),
            400,
        ),
    ];
    for (m, p, body, want) in cases {
        let r = rest.call(m.clone(), p, body).await;
        assert_eq!(r.status, want, "{m} {p}: {}", r.body);
        if want >= 400 && m != Method::HEAD {
            assert!(r.json()["message"].is_string(), "{p}: {}", r.body);
        }
    }
    // Bodies over the 1 MiB limit are 413, whether or not Content-Length announces them.
    let big = vec![b'a'; 1024 * 1024 + 1];
    let r = rest
        .call(
            Method::POST,
            "/api/hubs/chat/:send",
            Some(("text/plain", big.clone())),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.json()["code"], "PayloadTooLarge");
    let exactly = vec![b'a'; 1024 * 1024];
    assert_eq!(
        rest.call(
            Method::POST,
            "/api/hubs/chat/:send",
            Some(("text/plain", exactly))
        )
        .await
        .status,
        202
    );
    let url = format!("{}/api/hubs/chat/:addToGroups", rest.base);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let streamed = reqwest::Client::new()
        .post(&url)
        .bearer_auth(rest.token(&url))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("streamed call");
    assert_eq!(streamed.status().as_u16(), 413);
    // A filter over the clause limit is refused with its position.
    let huge = vec!["userId eq 'a'"; 101].join(" or ");
    let r = rest
        .post_json(
            "/api/hubs/chat/:addToGroups",
            json!({"groups": ["g"], "filter": huge}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .expect("message")
            .contains("clauses"),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_filters_are_worded_as_the_service_words_them() {
    let n = Hub::start_with(&[PRIMARY], "", &[]);
    let rest = n.rest(0);
    // The text the server SDK's own tests expect from the service for `invalid filter`.
    let azure = "Invalid syntax for 'invalid filter': Syntax error at position 14 in 'invalid filter'. (Parameter 'filter')";
    for path in [
        "/api/hubs/chat/:send?filter=invalid%20filter",
        "/api/hubs/chat/users/u/:send?filter=invalid%20filter",
        "/api/hubs/chat/groups/g/:send?filter=invalid%20filter",
    ] {
        let r = rest
            .call(Method::POST, path, Some(("text/plain", b"x".to_vec())))
            .await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(
            r.headers
                .get("x-ms-error-code")
                .and_then(|v| v.to_str().ok()),
            Some("BadRequest")
        );
        let body = r.json();
        assert_eq!(body["message"], azure, "{path}");
        // Nerve's own explanation, with the byte position, rides along.
        assert!(
            body["details"][0]["message"]
                .as_str()
                .is_some_and(|d| d.contains("unexpected 'filter'")),
            "{path}: {body}"
        );
    }
    let r = rest
        .post_json(
            "/api/hubs/chat/:addToGroups",
            json!({"groups": ["g"], "filter": "invalid filter"}),
        )
        .await;
    assert_eq!((r.status, r.json()["message"].clone()), (400, json!(azure)));
    // Other errors keep the shape and point at the expression at fault.
    let r = rest
        .call(
            Method::POST,
            "/api/hubs/chat/:send?filter=userId%20eq%201",
            Some(("text/plain", b"x".to_vec())),
        )
        .await;
    assert_eq!(
        r.json()["message"],
        "Invalid syntax for 'userId eq 1': Cannot compare a string with a number using 'eq', at position 10 in 'userId eq 1'. (Parameter 'filter')"
    );
}
