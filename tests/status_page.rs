//! The status page of `cvl utility run --http` on a generated state (no
//! guests: the host survey finds none of the recorded VMs running, which the
//! page shows as drift), over HTTP and in headless Chromium: pages and
//! their JSON, a `<script>` value shown as text and never run, sensitive
//! values never shown, read-only (405 for every method but GET), the token
//! off loopback (401 without it), and a page that follows a change of the
//! state without reloading. Screenshots under target/status-page/.

use std::time::Duration;

use cvl_e2e::browser::{http, screenshots, Browser};
use cvl_e2e::*;
use cvl_planner::model::{Change, ComponentPath, Status};
use serde_json::{json, Value};

const HOSTILE: &str = "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\">";

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_status_page_shows_the_state_escapes_values_and_follows_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut store = cvl_state::Store::open(&home.join("state.db")).unwrap();
    store
        .commit(&status_state(3, 3, |d, i| {
            if d == 1 && i == 2 {
                HOSTILE.to_string()
            } else {
                format!("Title {d}.{i}")
            }
        }))
        .unwrap();
    let (child, addr) = status_service(&cvl_binary(), &home, &["--survey-interval", "1s"]);
    let _service = Killed(child);
    let get = |path: &str| http("GET", &addr, path, &[], None);

    // The overview: every deployment and appliance.
    let page = get("/");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    for d in ["D0000", "D0001", "D0002"] {
        assert!(
            page.body.contains(&format!("data-deployment=\"{d}\"")),
            "{d} missing"
        );
    }
    assert_eq!(
        page.body.matches("<li class=\"s-").count(),
        9,
        "{}",
        page.body
    );
    assert!(!page.body.contains("FINGERPRINT"));

    // The JSON, and the survey's drift: nothing recorded runs.
    let overview: Value = serde_json::from_str(&get("/api/overview").body).unwrap();
    assert_eq!(overview["format_version"], 1);
    assert_eq!(overview["totals"]["appliances"], 9);
    let drift = wait_json(&addr, "/api/overview", |o| {
        o["totals"]["by_state"]["drift"] == 9
    });
    assert!(
        drift["attention"][0]["note"]
            .as_str()
            .unwrap()
            .contains("no process"),
        "{drift:#}"
    );
    let hosts: Value = serde_json::from_str(&get("/api/hosts").body).unwrap();
    assert_eq!(hosts["hosts"][0]["name"], "local");
    assert_eq!(hosts["hosts"][0]["vms"], 9);
    assert_eq!(hosts["hosts"][0]["memory_used_mib"], 9 * 128);
    assert!(hosts["hosts"][0]["last_contact"].is_string(), "{hosts:#}");

    // An appliance: its parameters, the sensitive one only named, the
    // hostile one as text.
    let appliance: Value =
        serde_json::from_str(&get("/api/deployments/D0001/appliances/c2").body).unwrap();
    let params = appliance["params"].as_array().unwrap();
    let password = params.iter().find(|p| p["name"] == "password").unwrap();
    assert_eq!(password["value"], Value::Null);
    assert_eq!(password["sensitive"], true);
    let title = params.iter().find(|p| p["name"] == "title").unwrap();
    assert_eq!(title["value"], HOSTILE);
    let html = get("/deployments/D0001/appliances/c2").body;
    assert!(
        !html.contains(HOSTILE),
        "the value is in the page unescaped"
    );
    assert!(
        html.contains("&#60;script&#62;window.__pwned=1&#60;/script&#62;"),
        "{html}"
    );
    assert!(html.contains("<em>sensitive</em>"));
    assert!(!html.contains("FINGERPRINT"));
    let csp = get("/").head;
    assert!(csp.contains("script-src 'self'"), "{csp}");

    // Read-only: every method but GET is refused, wherever it goes.
    for method in ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
        for path in ["/", "/api/overview", "/deployments/D0000", "/nowhere"] {
            let answer = http(method, &addr, path, &[], Some("{}"));
            assert_eq!(answer.status, 405, "{method} {path}");
            assert_eq!(answer.header("allow"), Some("GET"));
        }
    }
    assert_eq!(get("/deployments/nothing").status, 404);
    assert_eq!(get("/api/deployments/nothing").status, 404);

    // In the browser: the hostile value is text and did not run.
    let browser = Browser::start();
    let base = format!("http://{addr}");
    browser.goto(&format!("{base}/deployments/D0001/appliances/c2"));
    let shown = browser.run(
        "return [window.__pwned === undefined, document.body.innerText.includes(arguments[0])]",
        json!([HOSTILE]),
    );
    assert_eq!(shown, json!([true, true]), "the value ran or is not shown");
    browser.screenshot(&screenshots().join("generated-appliance.png"));

    // The deployment's picture: a box per appliance, in its VAN's band,
    // an arrow per requirement.
    browser.goto(&format!("{base}/deployments/D0000"));
    let picture = browser.run(
        "return Array.from(document.querySelectorAll('svg g.van')).map(v => \
         [v.getAttribute('data-van'), v.querySelectorAll('g.appliance').length]) \
         .concat([document.querySelectorAll('svg g.requires').length])",
        json!([]),
    );
    assert_eq!(picture, json!([["", 3], 2]), "{picture}");
    browser.screenshot(&screenshots().join("generated-deployment.png"));

    // A change of the state reaches the open page without a reload.
    browser.run("window.__stay = 42; return 1", json!([]));
    let before = browser.run(
        "return document.querySelector('g.appliance[data-component=\"c1\"] text:last-of-type').textContent",
        json!([]),
    );
    assert!(before.as_str().unwrap().contains("drift"), "{before}");
    store
        .commit(&[Change::VmStatus {
            deployment: "D0000".into(),
            path: ComponentPath("c1".into()),
            status: Status::Stopped,
        }])
        .unwrap();
    browser.wait_for(
        "return document.querySelector('g.appliance[data-component=\"c1\"] text:last-of-type')\
         .textContent.includes('stopped')",
        Duration::from_secs(20),
    );
    assert_eq!(
        browser.run("return window.__stay", json!([])),
        json!(42),
        "the page reloaded"
    );

    browser.goto(&base);
    browser.screenshot(&screenshots().join("generated-overview.png"));
    // On a phone's width nothing makes the page itself scroll sideways
    // (wide tables and the picture scroll in their own boxes).
    browser.resize(390, 844);
    for path in [
        "/",
        "/deployments/D0000",
        "/deployments/D0001/appliances/c2",
        "/hosts",
    ] {
        browser.goto(&format!("{base}{path}"));
        let fits = browser.run(
            "return [document.documentElement.scrollWidth, window.innerWidth]",
            json!([]),
        );
        assert!(
            fits[0].as_u64() <= fits[1].as_u64(),
            "{path} is wider than a phone: {fits}"
        );
    }
    browser.goto(&base);
    browser.screenshot(&screenshots().join("generated-overview-phone.png"));
    browser.resize(1280, 900);
    browser.goto(&format!("{base}/hosts"));
    let host = browser.run(
        "return document.querySelector('tr[data-host=\"local\"]').innerText",
        json!([]),
    );
    assert!(
        host.as_str().unwrap().contains("1024 / 16384 MiB"),
        "{host}"
    );
    browser.screenshot(&screenshots().join("generated-hosts.png"));
}

#[test]
fn off_loopback_the_page_needs_its_token() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let cvl = cvl_binary();
    let run = |args: &[&str]| {
        std::process::Command::new(&cvl)
            .args(["utility", "run", "--interval", "1h"])
            .args(args)
            .env("CVL_HOME", &home)
            .output()
            .unwrap()
    };
    // Without a token it does not start.
    let out = run(&["--http", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--http-token-file"), "{}", text(&out));
    // A token others can read, or too short, is refused.
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "0123456789abcdef-token\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&[
        "--http",
        "0.0.0.0:0",
        "--http-token-file",
        token_file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("chmod 600"), "{}", text(&out));
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let mut child = std::process::Command::new(&cvl)
        .args(["utility", "run", "--interval", "1h", "--http", "0.0.0.0:0"])
        .args(["--http-token-file", token_file.to_str().unwrap()])
        .env("CVL_HOME", &home)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let bound = started_http(&mut child);
    let _service = Killed(child);
    let port = bound.rsplit(':').next().unwrap();
    assert!(bound.starts_with("0.0.0.0:"), "{bound}");
    let addr = format!("127.0.0.1:{port}");
    let status = |headers: &[(&str, &str)], path: &str| http("GET", &addr, path, headers, None);
    for path in [
        "/",
        "/api/overview",
        "/hosts",
        "/events?page=/",
        "/assets/live.js",
    ] {
        let refused = status(&[], path);
        assert_eq!(refused.status, 401, "{path}");
        assert!(refused
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic"));
        assert!(!refused.body.contains("Overview"));
        assert_eq!(
            status(&[("Authorization", "Bearer wrong-token-0123456")], path).status,
            401
        );
    }
    assert_eq!(
        status(&[("Authorization", "Bearer 0123456789abcdef-token")], "/").status,
        200
    );
    // The browser's login: any user, the token as password.
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("admin:0123456789abcdef-token")
    );
    let answer = status(&[("Authorization", &basic)], "/api/overview");
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("\"format_version\":1"));
}

/// Polls a JSON page until `ok` holds (the survey runs every second).
fn wait_json(addr: &str, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let started = std::time::Instant::now();
    loop {
        let value: Value = serde_json::from_str(&http("GET", addr, path, &[], None).body).unwrap();
        if ok(&value) {
            return value;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{path} never became what was expected: {value:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `/metrics` is served by the service's HTTP stack from its snapshot, and
/// parses with the Prometheus project's own OpenMetrics parser (Python's
/// `prometheus_client`, Debian's python3-prometheus-client): every family,
/// the appliances by status as the state records them. Read-only.
#[test]
fn metrics_parse_with_the_prometheus_parser() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut store = cvl_state::Store::open(&home.join("state.db")).unwrap();
    store
        .commit(&status_state(2, 3, |d, i| format!("Title {d}.{i}")))
        .unwrap();
    // One appliance stopped: the gauge must say 5 running, 1 stopped.
    store
        .commit(&[Change::VmStatus {
            deployment: "D0001".into(),
            path: ComponentPath("c1".into()),
            status: Status::Stopped,
        }])
        .unwrap();
    drop(store);
    let (child, started) = status_service_started(
        &cvl_binary(),
        &home,
        &["--metrics", "127.0.0.1:0", "--survey-interval", "1h"],
    );
    let metrics_addr = started["metrics"].as_str().unwrap().to_string();
    let _service = Killed(child);
    let scrape = http("GET", &metrics_addr, "/metrics", &[], None);
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    assert!(
        scrape
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        scrape.header("content-type")
    );
    let parser = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        for f in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in f.samples:\n\
        \x20       labels = ','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))\n\
        \x20       print(f.name, f.type, s.name, labels, float(s.value))\n";
    let mut python = std::process::Command::new("/usr/bin/python3")
        .args(["-c", parser])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (Debian's, with python3-prometheus-client)");
    use std::io::Write;
    python
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.body.as_bytes())
        .unwrap();
    let parsed = python.wait_with_output().unwrap();
    assert!(
        parsed.status.success(),
        "the Prometheus parser refused /metrics:\n{}\n{}",
        String::from_utf8_lossy(&parsed.stderr),
        scrape.body
    );
    let samples = String::from_utf8_lossy(&parsed.stdout).into_owned();
    eprintln!("{samples}");
    for line in [
        "cvl_deployments gauge cvl_deployments  2.0",
        "cvl_appliances gauge cvl_appliances status=running 5.0",
        "cvl_appliances gauge cvl_appliances status=stopped 1.0",
        "cvl_updates_applied counter cvl_updates_applied_total  0.0",
        "cvl_poll_rounds counter cvl_poll_rounds_total",
        "cvl_blacklist_violations gauge cvl_blacklist_violations  0.0",
    ] {
        assert!(samples.contains(line), "`{line}` missing:\n{samples}");
    }
    // Read-only, and nothing else is served there.
    let post = http("POST", &metrics_addr, "/metrics", &[], Some(""));
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET"));
    assert_eq!(http("GET", &metrics_addr, "/", &[], None).status, 404);
}
