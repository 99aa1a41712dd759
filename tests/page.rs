//! The chat page (`GET /`) in a real browser: headless Chromium, driven through
//! chromedriver (WebDriver), against `parlor serve` and the mock model.
//!
//! Without Chromium and chromedriver (Debian: `apt-get install chromium
//! chromium-driver`) the browser test says so on stderr and skips; with
//! `PARLOR_REQUIRE_BROWSER=1` (as `.ci/run` sets) it fails instead.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{WAIT, expected_answer, mock_llm, wait_for_mock};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

#[tokio::test]
async fn the_page_is_served_with_a_policy_that_allows_only_its_own_scripts() {
    let model = mock_llm(0, 0);
    let server = common::serve(&model, &[]);
    let page = reqwest::get(server.http("/")).await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>"), "no inline script");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere"
    );

    let script = reqwest::get(server.http("/static/vendor/marked.esm.js"))
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let etag = script.headers()["etag"].clone();
    let again = reqwest::Client::new()
        .get(server.http("/static/vendor/marked.esm.js"))
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let missing = reqwest::get(server.http("/static/../Cargo.toml"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

/// Chromium through chromedriver, ended when dropped.
struct Browser {
    client: Client,
    driver: Child,
}

impl Browser {
    /// A headless browser, or `None` (said on stderr) where none is installed.
    async fn start() -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            let why = format!(
                "{CHROMIUM} or {CHROMEDRIVER} is missing (Debian: apt-get install chromium chromium-driver)"
            );
            assert!(
                std::env::var_os("PARLOR_REQUIRE_BROWSER").is_none(),
                "PARLOR_REQUIRE_BROWSER is set, but {why}"
            );
            eprintln!("SKIPPED: the browser test needs Chromium: {why}");
            return None;
        }
        let port = {
            let free = TcpListener::bind("127.0.0.1:0").unwrap();
            free.local_addr().unwrap().port()
        };
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1000,900"],
            }
        });
        let capabilities = match capabilities {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + WAIT;
        let client = loop {
            // chromedriver speaks plain HTTP on the loopback: no TLS.
            let connected = ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await;
            match connected {
                Ok(client) => break client,
                Err(error) if tokio::time::Instant::now() > deadline => {
                    panic!("chromedriver did not start a browser: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Some(Browser { client, driver })
    }

    /// The value of `expression`, evaluated in the page.
    async fn eval(&self, expression: &str) -> Value {
        self.client
            .execute(&format!("return ({expression});"), vec![])
            .await
            .unwrap_or_else(|error| panic!("{expression}: {error}"))
    }

    /// Waits until `expression` is true in the page.
    async fn wait_until(&self, expression: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.eval(expression).await != json!(true) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page never showed {expression}; it reads:\n{}",
                self.eval("document.body.innerText").await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the button whose id is `id`.
    async fn click(&self, id: &str) {
        let button = self.client.find(Locator::Id(id)).await.unwrap();
        button.click().await.unwrap();
    }

    async fn wait_connected(&self) {
        self.wait_until("document.getElementById('status').textContent === 'Connected'")
            .await;
    }

    /// Types `text` into the message box and presses Enter.
    async fn ask(&self, text: &str) {
        let input = self.client.find(Locator::Id("input")).await.unwrap();
        input.send_keys(text).await.unwrap();
        input.send_keys("\u{E007}").await.unwrap();
    }

    /// Waits until the page shows `count` answers, the last one with some text.
    async fn answer_streaming(&self, count: usize) {
        self.wait_until(&format!(
            "document.querySelectorAll('.message.assistant').length === {count} \
             && {LAST_ANSWER}.querySelector('.answer').innerText.length > 0"
        ))
        .await;
    }

    /// How many answers the page shows, once every turn has ended.
    async fn answers_when_done(&self, count: usize) {
        self.wait_until(&format!(
            "document.querySelectorAll('.message.assistant').length === {count} \
             && document.getElementById('stop').disabled"
        ))
        .await;
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

const LAST_ANSWER: &str = "[...document.querySelectorAll('.message.assistant')].at(-1)";

#[tokio::test]
async fn a_person_chats_stops_searches_and_comes_back_in_a_browser() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let model = mock_llm(0, 20);
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().display().to_string();
    let settings = [
        ("PARLOR_STORAGE__DATA_DIR", data_dir.as_str()),
        ("PARLOR_HTTP__MAX_MESSAGE_BYTES", "2000"),
    ];
    let mut server = common::serve(&model, &settings);
    let page = &browser.client;
    page.goto(&server.http("/")).await.unwrap();
    browser.wait_connected().await;
    browser
        .wait_until("document.querySelectorAll('#source-list input:checked').length === 1")
        .await;

    // Markdown is rendered; HTML in a question or an answer is only text.
    let question =
        "Say **bold** <img src=x onerror=\"window.pwned=1\"> <script>window.pwned=2</script>";
    browser.ask(question).await;
    browser.answers_when_done(1).await;
    let answer = browser
        .eval(&format!("{LAST_ANSWER}.querySelector('.answer').innerText"))
        .await;
    let expected = expected_answer(question, 1).replace("**bold**", "bold");
    assert_eq!(answer.as_str().unwrap().trim(), expected);
    let bold = browser
        .eval(&format!(
            "{LAST_ANSWER}.querySelector('.answer strong')?.textContent"
        ))
        .await;
    assert_eq!(bold, "bold");
    let asked = browser
        .eval("document.querySelector('.message.user').innerText")
        .await;
    assert_eq!(asked, question);
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#log img, #log script').length")
            .await,
        0
    );
    assert_eq!(
        browser.eval("window.pwned === undefined").await,
        true,
        "no script ran"
    );

    // Shift+Enter is a new line; nothing is sent.
    let input = page.find(Locator::Id("input")).await.unwrap();
    input
        .send_keys("first line\u{E008}\u{E007}\u{E000}second")
        .await
        .unwrap();
    assert_eq!(
        browser.eval("document.getElementById('input').value").await,
        "first line\nsecond"
    );
    browser
        .eval("document.getElementById('input').value = ''")
        .await;

    // Stop cuts the model's stream.
    let long_question = ["word"; 120].join(" ");
    browser.ask(&long_question).await;
    browser.answer_streaming(2).await;
    browser.click("stop").await;
    browser.answers_when_done(2).await;
    let note = browser
        .eval(&format!("{LAST_ANSWER}.querySelector('.note').textContent"))
        .await;
    assert_eq!(note, "Stopped.");
    wait_for_mock(&model, "the stream cut", |stats| {
        stats["streams_cancelled"].as_u64() >= Some(1)
    })
    .await;

    // A search: its tool step, then its references, which the answer cites.
    browser
        .ask("How do I run parlor with RabbitMQ? [mock:tool=parlor_docs]")
        .await;
    browser.answers_when_done(3).await;
    let step = browser
        .eval(&format!(
            "{LAST_ANSWER}.querySelector('.tools li.done')?.textContent"
        ))
        .await;
    assert!(step.as_str().unwrap().starts_with("Searched"), "{step}");
    let references = browser
        .eval(&format!(
            "{LAST_ANSWER}.querySelectorAll('.references li').length"
        ))
        .await;
    assert!(references.as_u64().unwrap() >= 1, "{references}");
    let citations = browser
        .eval(&format!(
            "{LAST_ANSWER}.querySelectorAll('a[href^=\"#cite-\"]').length"
        ))
        .await;
    assert!(
        citations.as_u64().unwrap() >= 1,
        "the answer links its citations"
    );

    // A message the server refuses says why.
    browser
        .eval("document.getElementById('input').value = 'x'.repeat(3000)")
        .await;
    browser.click("send").await;
    browser
        .wait_until("[...document.querySelectorAll('.message.user .failed')].some(e => e.textContent.includes('too long'))")
        .await;

    // A reload shows the conversation again.
    page.refresh().await.unwrap();
    browser.answers_when_done(3).await;
    assert_eq!(
        browser
            .eval(&format!(
                "{LAST_ANSWER}.querySelectorAll('.references li').length"
            ))
            .await,
        json!(0),
        "the history has the answers, not their references"
    );
    let first = browser
        .eval("document.querySelector('.message.assistant .answer').innerText")
        .await;
    assert_eq!(first.as_str().unwrap().trim(), expected);
    let after = browser
        .eval("document.getElementById('log').innerText")
        .await;
    assert!(
        after
            .as_str()
            .unwrap()
            .contains("How do I run parlor with RabbitMQ?")
    );

    // A reload in the middle of an answer follows it to its end.
    browser.ask(&long_question).await;
    browser.answer_streaming(4).await;
    page.refresh().await.unwrap();
    browser.answers_when_done(4).await;
    let continued = browser
        .eval(&format!("{LAST_ANSWER}.querySelector('.answer').innerText"))
        .await;
    assert_eq!(
        continued.as_str().unwrap().trim(),
        expected_answer(&long_question, 4)
    );

    // With its only source unchecked, a message offers the model no tool: it
    // answers without searching.
    browser
        .eval("document.querySelector('#source-list input').click()")
        .await;
    let question = "Search anyway [mock:tool=parlor_docs]";
    browser.ask(question).await;
    browser.answers_when_done(5).await;
    let steps = browser
        .eval(&format!(
            "{LAST_ANSWER}.querySelectorAll('.tools li').length"
        ))
        .await;
    assert_eq!(steps, 0, "no search without a source");
    let plain = browser
        .eval(&format!("{LAST_ANSWER}.querySelector('.answer').innerText"))
        .await;
    assert_eq!(plain.as_str().unwrap().trim(), expected_answer(question, 5));

    // The server goes away and comes back: the page reconnects by itself.
    let address = server.addr.clone();
    server.kill_hard();
    browser
        .wait_until("document.getElementById('status').textContent.startsWith('Disconnected')")
        .await;
    let settings = [
        ("PARLOR_STORAGE__DATA_DIR", data_dir.as_str()),
        ("PARLOR_HTTP__BIND", address.as_str()),
    ];
    let _server = common::serve(&model, &settings);
    browser.wait_connected().await;
    browser.answers_when_done(5).await;

    // On a phone-sized screen nothing is wider than the screen.
    page.set_window_size(390, 844).await.unwrap();
    browser
        .wait_until("document.documentElement.scrollWidth <= window.innerWidth")
        .await;
    browser.screenshot("chat-page-phone.png").await;

    // A new conversation starts empty.
    let session = browser.eval("localStorage.getItem('parlor.session')").await;
    browser.click("new-conversation").await;
    browser
        .wait_until("document.querySelectorAll('.message').length === 0")
        .await;
    browser
        .wait_until(&format!(
            "localStorage.getItem('parlor.session') !== null && localStorage.getItem('parlor.session') !== {session}"
        ))
        .await;

    // The picture of the README: a search and its answer, references open.
    page.set_window_size(1000, 760).await.unwrap();
    browser
        .eval("document.querySelector('#source-list input').click()")
        .await;
    browser
        .ask("How do I run parlor with RabbitMQ? [mock:tool=parlor_docs]")
        .await;
    browser.answers_when_done(1).await;
    browser
        .eval(&format!(
            "{LAST_ANSWER}.querySelector('.references').open = true"
        ))
        .await;
    let shot = browser.screenshot("chat-page.png").await;
    eprintln!("screenshot: {}", shot.display());
    browser.client.clone().close().await.unwrap();
}
