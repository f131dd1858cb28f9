//! Request validation over HTTP: FastAPI's 422 shape with every problem located, and the
//! other client errors (bad JSON, media type, size). Nothing invalid reaches the platform.

#[macro_use]
mod common;

use common::{Backend, TestApp, json_of, order_body};
use serde_json::{Value, json};

on_both_databases!(
    every_rule_answers_422_at_the_field,
    all_errors_of_a_request_come_at_once,
    malformed_json_is_422_json_invalid,
    wrong_content_type_is_415,
    body_over_64_kib_is_413,
    health_is_exactly_the_old_answer,
    unknown_route_and_method_answer_like_fastapi,
);

fn with(path: &[&str], value: Value) -> Value {
    let mut body = order_body(1);
    let mut target = &mut body;
    for part in &path[..path.len() - 1] {
        target = match part.parse::<usize>() {
            Ok(i) => &mut target[i],
            Err(_) => &mut target[*part],
        };
    }
    let last = path[path.len() - 1];
    if value.is_null() && last != "userId" && last != "currency" {
        target.as_object_mut().unwrap().remove(last);
    } else {
        target[last] = value;
    }
    body
}

async fn every_rule_answers_422_at_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases: Vec<(Value, Vec<Value>, &str)> = vec![
        (
            with(&["address"], Value::Null),
            vec![json!("address")],
            "missing",
        ),
        (
            with(&["address", "line1"], Value::Null),
            vec![json!("address"), json!("line1")],
            "missing",
        ),
        (
            with(&["address", "city"], json!("  ")),
            vec![json!("address"), json!("city")],
            "value_error",
        ),
        (
            with(&["address", "country"], json!(5)),
            vec![json!("address"), json!("country")],
            "string_type",
        ),
        (
            with(&["address", "postalCode"], json!("9".repeat(201))),
            vec![json!("address"), json!("postalCode")],
            "string_too_long",
        ),
        (
            with(&["currency"], json!("XYZ")),
            vec![json!("currency")],
            "value_error",
        ),
        (
            with(&["items"], json!([])),
            vec![json!("items")],
            "too_short",
        ),
        (
            with(&["items"], json!("SKU-001")),
            vec![json!("items")],
            "list_type",
        ),
        (
            with(
                &["items"],
                Value::Array(vec![json!({"sku": "A", "qty": 1, "price": 1}); 101]),
            ),
            vec![json!("items")],
            "too_long",
        ),
        (
            with(&["items", "0", "sku"], json!("")),
            vec![json!("items"), json!(0), json!("sku")],
            "value_error",
        ),
        (
            with(&["items", "0", "sku"], json!("S".repeat(65))),
            vec![json!("items"), json!(0), json!("sku")],
            "string_too_long",
        ),
        (
            with(&["items", "0", "qty"], json!(0)),
            vec![json!("items"), json!(0), json!("qty")],
            "greater_than_equal",
        ),
        (
            with(&["items", "0", "qty"], json!(10_001)),
            vec![json!("items"), json!(0), json!("qty")],
            "less_than_equal",
        ),
        (
            with(&["items", "0", "qty"], json!(1.5)),
            vec![json!("items"), json!(0), json!("qty")],
            "int_from_float",
        ),
        (
            with(&["items", "0", "qty"], json!("2")),
            vec![json!("items"), json!(0), json!("qty")],
            "int_type",
        ),
        (
            with(&["items", "0", "price"], json!(-1)),
            vec![json!("items"), json!(0), json!("price")],
            "greater_than_equal",
        ),
        (
            with(&["items", "0", "price"], json!("10")),
            vec![json!("items"), json!(0), json!("price")],
            "float_type",
        ),
        (
            with(&["items", "0", "price"], json!(10.555)),
            vec![json!("items"), json!(0), json!("price")],
            "decimal_max_places",
        ),
        (
            with(&["items", "0", "price"], json!(0)),
            vec![json!("items")],
            "value_error",
        ),
        (
            with(&["userId"], json!("u".repeat(129))),
            vec![json!("userId")],
            "string_too_long",
        ),
        (
            with(&["userId"], json!(42)),
            vec![json!("userId")],
            "string_type",
        ),
        // PostgreSQL cannot store U+0000: refused on every database, at the field.
        (
            with(&["userId"], json!("u\u{0}1")),
            vec![json!("userId")],
            "string_pattern_mismatch",
        ),
        (
            with(&["address", "line1"], json!("1 MG\u{0} Road")),
            vec![json!("address"), json!("line1")],
            "string_pattern_mismatch",
        ),
        (
            with(&["items", "0", "sku"], json!("SKU-001\u{0}")),
            vec![json!("items"), json!(0), json!("sku")],
            "string_pattern_mismatch",
        ),
        (json!([1, 2]), vec![], "model_attributes_type"),
    ];
    for (body, field, kind) in cases {
        let (status, answer) = json_of(app.post_order(&body, None).await).await;
        assert_eq!(status, 422, "{body} -> {answer}");
        let mut loc = vec![json!("body")];
        loc.extend(field);
        let detail = answer["detail"]
            .as_array()
            .unwrap_or_else(|| panic!("{answer}"));
        assert_eq!(detail.len(), 1, "{body} -> {answer}");
        assert_eq!(detail[0]["loc"], Value::Array(loc), "{body} -> {answer}");
        assert_eq!(detail[0]["type"], kind, "{body} -> {answer}");
        assert!(detail[0]["msg"].is_string());
    }
    // JPY has no minor unit.
    let mut yen = order_body(1);
    yen["currency"] = json!("JPY");
    let (status, answer) = json_of(app.post_order(&yen, None).await).await;
    assert_eq!(status, 422);
    assert_eq!(answer["detail"][0]["type"], "decimal_max_places");
    yen["items"][0]["price"] = json!(1050);
    assert_eq!(app.post_order(&yen, None).await.status(), 201);

    let inventory = app.inventory().await;
    assert_eq!(
        inventory.calls["POST /reserve"], 1,
        "only the valid order reached inventory"
    );
    app.stop().await;
}

async fn all_errors_of_a_request_come_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body =
        json!({"address": {"line1": ""}, "currency": "ZZZ", "items": [{"sku": "A", "qty": 0}]});
    let (status, answer) = json_of(app.post_order(&body, None).await).await;
    assert_eq!(status, 422);
    let locs: Vec<String> = answer["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["loc"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.to_string().trim_matches('"').to_owned())
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect();
    assert_eq!(
        locs,
        vec![
            "body.address.line1",
            "body.address.city",
            "body.address.country",
            "body.address.postalCode",
            "body.currency",
            "body.items.0.qty",
            "body.items.0.price",
        ]
    );
    app.stop().await;
}

async fn malformed_json_is_422_json_invalid(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .client
        .post(format!("{}/orders", app.address))
        .header("Content-Type", "application/json")
        .body("{\"items\": [")
        .send()
        .await
        .unwrap();
    let (status, answer) = json_of(response).await;
    assert_eq!(status, 422);
    assert_eq!(answer["detail"][0]["type"], "json_invalid");
    assert_eq!(answer["detail"][0]["loc"][0], "body");
    app.stop().await;
}

async fn wrong_content_type_is_415(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .client
        .post(format!("{}/orders", app.address))
        .header("Content-Type", "text/plain")
        .body(order_body(1).to_string())
        .send()
        .await
        .unwrap();
    let (status, answer) = json_of(response).await;
    assert_eq!(status, 415);
    assert_eq!(answer["detail"], "Content-Type must be application/json");
    // No Content-Type at all is read as JSON, as FastAPI does.
    let response = app
        .client
        .post(format!("{}/orders", app.address))
        .body(order_body(1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    app.stop().await;
}

async fn body_over_64_kib_is_413(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut body = order_body(1);
    body["padding"] = json!("x".repeat(64 * 1024));
    let (status, answer) = json_of(app.post_order(&body, None).await).await;
    assert_eq!(status, 413);
    assert_eq!(answer["detail"], "Request body is larger than 65536 bytes");
    // Without Content-Length (chunked), the limit holds as well.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b' '; 40_000]), Ok(vec![b' '; 40_000])];
    let sent = app
        .client
        .post(format!("{}/orders", app.address))
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    match sent {
        Ok(response) => assert_eq!(response.status(), 413),
        // The server may answer 413 and close while the client is still sending; the
        // client then sees the connection end instead of the answer.
        Err(error) => assert!(error.is_request() || error.is_body(), "{error:?}"),
    }
    assert_eq!(app.get_json("/health").await.0, 200, "the server is fine");
    assert!(app.inventory().await.reservations.is_empty());
    app.stop().await;
}

async fn health_is_exactly_the_old_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .client
        .get(format!("{}/health", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-request-id").is_some());
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"status":"ok","service":"Order Service"}"#
    );
    app.stop().await;
}

async fn unknown_route_and_method_answer_like_fastapi(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = json_of(
        app.client
            .get(format!("{}/nope", app.address))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body), (404, json!({"detail": "Not Found"})));
    let (status, body) = json_of(
        app.client
            .delete(format!("{}/orders", app.address))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (405, json!({"detail": "Method Not Allowed"}))
    );
    app.stop().await;
}
