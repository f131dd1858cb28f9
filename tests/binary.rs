//! The `order-service` binary itself: `dev` end to end over HTTP, `sandbox` alone, and
//! configuration errors that stop it at start.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_order-service");

/// A base port whose +0..+3 are all free right now. The child process binds them a
/// moment later, so they are drawn from below Linux's default ephemeral range (32768 and
/// up): no other test's `bind(0)` or outgoing connection can be given one meanwhile.
fn free_port_block() -> u16 {
    for _ in 0..200 {
        let base: u16 = 10_000 + (rand_u16() % 22_000);
        let taken: Vec<_> = (0..4)
            .map(|i| TcpListener::bind(("127.0.0.1", base + i)))
            .collect();
        if taken.iter().all(Result::is_ok) {
            return base;
        }
    }
    panic!("no free block of four ports");
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) as u16
}

/// A command with none of the service's variables inherited from the environment.
fn command() -> Command {
    let mut cmd = Command::new(BIN);
    for var in [
        "DATABASE_URL",
        "PORT",
        "HOST",
        "INVENTORY_URL",
        "PAYMENT_URL",
        "SHIPPING_URL",
        "DEBUG_MODE",
        "DATABASE_SERVICE_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_healthy(client: &reqwest::Client, url: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(format!("{url}/health")).send().await {
            return response.json().await.unwrap();
        }
        assert!(Instant::now() < deadline, "{url} never became healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn dev_runs_the_platform_and_the_service_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_block();
    let child = command()
        .args(["dev", "--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--stock", "SKU-009=5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let client = reqwest::Client::new();
    let orders = format!("http://127.0.0.1:{port}");
    assert_eq!(
        wait_healthy(&client, &orders).await,
        json!({"status": "ok", "service": "Order Service"})
    );
    for (offset, name) in [(1, "Payment"), (2, "Inventory"), (3, "Shipping")] {
        let url = format!("http://127.0.0.1:{}", port + offset);
        assert_eq!(
            wait_healthy(&client, &url).await["service"],
            format!("{name} Service")
        );
    }

    let body = json!({
        "address": {"line1": "1 MG Road", "city": "Pune", "country": "IN", "postalCode": "411001"},
        "items": [{"sku": "SKU-009", "qty": 2, "price": 99.5}],
    });
    let response = client
        .post(format!("{orders}/orders"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["userId"], "anonymous");
    let ledger: Value = client
        .get(format!("http://127.0.0.1:{}/_sandbox/ledger", port + 2))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ledger["stock"]["SKU-009"], 3, "--stock reached the sandbox");
    assert_eq!(ledger["stock"]["SKU-001"], 100);
    assert!(
        dir.path().join("orders.db").exists(),
        "SQLite under --data-dir"
    );

    let status = terminate(&mut running.0);
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let mut banner = String::new();
    use std::io::Read;
    running
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut banner)
        .unwrap();
    assert!(
        banner.contains(&format!("http://127.0.0.1:{port}")),
        "{banner}"
    );
    assert!(banner.contains("curl -s -X POST"), "{banner}");
}

#[tokio::test]
async fn sandbox_binds_only_the_three_service_ports() {
    let port = free_port_block();
    let child = command()
        .args([
            "sandbox",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let client = reqwest::Client::new();
    let inventory = format!("http://127.0.0.1:{}", port + 2);
    assert_eq!(
        wait_healthy(&client, &inventory).await["service"],
        "Inventory Service"
    );
    assert!(
        TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "the order service's own port stays free"
    );
    assert!(terminate(&mut running.0).success());
}

fn fails_at_start(env: &[(&str, &str)], args: &[&str]) -> String {
    let output = command()
        .envs(env.iter().copied())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "should not start with {env:?} {args:?}"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_configuration_stops_the_process_naming_the_variable() {
    let message = fails_at_start(&[("PORT", "eighty")], &[]);
    assert!(
        message.contains("PORT must be a TCP port number"),
        "{message}"
    );
    let message = fails_at_start(&[("DATABASE_URL", "mysql://db/orders")], &["serve"]);
    assert!(
        message.contains("DATABASE_URL must start with sqlite: or postgres://"),
        "{message}"
    );
    let message = fails_at_start(&[("PAYMENT_URL", "payments:8005")], &[]);
    assert!(
        message.contains("PAYMENT_URL must be an http:// URL"),
        "{message}"
    );
    let message = fails_at_start(&[("DEBUG_MODE", "sometimes")], &[]);
    assert!(
        message.contains("DEBUG_MODE must be true or false"),
        "{message}"
    );
    let message = fails_at_start(&[], &["dev", "--stock", "SKU-1=lots"]);
    assert!(message.contains("--stock"), "{message}");
}

#[tokio::test]
async fn legacy_database_service_url_is_accepted_and_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_block();
    let child = command()
        .env("DATABASE_SERVICE_URL", "http://localhost:8000")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("o.db").display()),
        )
        .env("LOG_FORMAT", "json")
        .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let client = reqwest::Client::new();
    wait_healthy(&client, &format!("http://127.0.0.1:{port}")).await;
    assert!(terminate(&mut running.0).success());
    let mut logs = String::new();
    use std::io::Read;
    running
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let mentions = logs
        .lines()
        .filter(|l| l.contains("DATABASE_SERVICE_URL"))
        .count();
    assert_eq!(mentions, 1, "{logs}");
    assert!(logs.contains("orders are stored in DATABASE_URL"), "{logs}");
}

#[test]
fn migrate_creates_the_schema_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nested").join("orders.db");
    let status = command()
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .arg("migrate")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(db.exists(), "directory and file created");
}

#[tokio::test]
async fn json_log_lines_of_a_request_carry_its_request_and_order_ids() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_block();
    let child = command()
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .args(["dev", "--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let client = reqwest::Client::new();
    let orders = format!("http://127.0.0.1:{port}");
    wait_healthy(&client, &orders).await;
    let body = json!({
        "address": {"line1": "1 MG Road", "city": "Pune", "country": "IN", "postalCode": "411001"},
        "items": [{"sku": "SKU-001", "qty": 1, "price": 5}],
    });
    let response = client
        .post(format!("{orders}/orders"))
        .header("X-Request-Id", "log-test-7f3a")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let order: Value = response.json().await.unwrap();
    let order_id = order["id"].as_str().unwrap().to_owned();
    assert!(terminate(&mut running.0).success());
    let mut output = String::new();
    use std::io::Read;
    running
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();

    let lines: Vec<Value> = output
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty(), "{output}");
    let of_request: Vec<&Value> = lines
        .iter()
        .filter(|l| l.to_string().contains("log-test-7f3a"))
        .collect();
    let finished = of_request
        .iter()
        .find(|l| l["message"] == "order finished")
        .unwrap_or_else(|| panic!("no saga line with the request id in {output}"));
    assert!(finished.to_string().contains(&order_id), "{finished}");
    let access = of_request
        .iter()
        .find(|l| l["message"] == "finished processing request")
        .unwrap_or_else(|| panic!("no access line in {output}"));
    assert_eq!(access["span"]["request_id"], "log-test-7f3a");
    assert_eq!(access["span"]["order_id"], order_id.as_str());
    assert_eq!(access["span"]["route"], "/orders");
}

#[tokio::test]
async fn a_second_process_on_the_same_sqlite_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("orders.db").display());
    let port = free_port_block();
    let first = command()
        .env("DATABASE_URL", &url)
        .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = Running(first);
    wait_healthy(&reqwest::Client::new(), &format!("http://127.0.0.1:{port}")).await;
    let message = fails_at_start(
        &[("DATABASE_URL", url.as_str())],
        &[
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            &(port + 1).to_string(),
        ],
    );
    assert!(
        message.contains("in use by another order-service process"),
        "{message}"
    );
    assert!(message.contains("PostgreSQL"), "{message}");
    assert!(terminate(&mut first.0).success());
    // Once the first is gone, the file is free again.
    let status = command()
        .env("DATABASE_URL", &url)
        .arg("migrate")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}
