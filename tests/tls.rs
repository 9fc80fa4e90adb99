//! TLS end to end with a certificate chain the test makes: the engine's
//! broker sessions over `mqtts://` (ingest and the alert publisher, and the
//! load generator), the API over HTTPS, and PostgreSQL with `sslmode`; an
//! untrusted certificate is refused with the reason.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// A CA and a certificate it signed for `localhost` and 127.0.0.1, as PEM
/// files in a temporary directory.
struct Chain {
    dir: tempfile::TempDir,
}

impl Chain {
    fn new() -> Chain {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
        let dir = tempfile::tempdir().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "wardwatch test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        leaf.subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), leaf_cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), leaf_key.serialize_pem()).unwrap();
        Chain { dir }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }
}

fn mqtts(broker: &Broker, user: &str, pass: &str) -> String {
    format!("mqtts://{user}:{pass}@localhost:{}", broker.port)
}

/// Runs `wardwatch serve` with `env` until its log shows `needle` (or
/// WAIT passes); returns the log.
async fn serve_until_logged(env: &[(&str, &str)], needle: &str) -> String {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = wardwatch();
    cmd.arg("serve")
        .env("WARDWATCH_HTTP_ADDR", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let path = log.path().to_path_buf();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    found.unwrap_or_else(|_| {
        panic!(
            "{needle:?} never logged: {}",
            std::fs::read_to_string(&path).unwrap_or_default()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_and_alerts_travel_over_mqtts_and_an_untrusted_broker_is_refused() {
    let chain = Chain::new();
    let broker = Broker::start_tls(&chain.ca(), &chain.cert(), &chain.key()).await;
    let db = Db::create("mqtts").await;
    let ca = chain.ca();
    let _engine = Engine::start_with(
        &mqtts(&broker, ENGINE_USER, ENGINE_PASS),
        &db.url,
        &unique("eng"),
        &[("WARDWATCH_MQTT_CA_FILE", ca.to_str().unwrap())],
    )
    .await;
    let out = wardwatch()
        .args([
            "loadgen",
            "--mqtt-url",
            &mqtts(&broker, LOADGEN_USER, LOADGEN_PASS),
        ])
        .arg("--mqtt-ca-file")
        .arg(&ca)
        .args(["--database-url", &db.url])
        .args(["--devices", "10", "--rate", "2", "--duration", "2"])
        .args(["--pack-size", "5", "--settle", "20", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let published = summary["readings_published"].as_i64().unwrap();
    assert!(published >= 10 * 5, "{summary}");
    assert_eq!(summary["readings_stored"].as_i64().unwrap(), published);
    assert_eq!(db.count("SELECT count(*) FROM readings").await, published);
    // Both engine sessions reached the TLS-only listener.
    let log = broker.log();
    for user in [ENGINE_USER, ALERTS_USER] {
        assert!(
            log.contains(&format!("u'{user}'")),
            "{user} connected: {log}"
        );
    }

    // Another CA's broker is refused, and the log says why.
    let other = Chain::new();
    let other_ca = other.ca();
    let log = serve_until_logged(
        &[
            (
                "WARDWATCH_MQTT_URL",
                &mqtts(&broker, ENGINE_USER, ENGINE_PASS),
            ),
            (
                "WARDWATCH_MQTT_ALERTS_URL",
                &mqtts(&broker, ALERTS_USER, ALERTS_PASS),
            ),
            ("WARDWATCH_MQTT_CA_FILE", other_ca.to_str().unwrap()),
            ("WARDWATCH_DATABASE_URL", &db.url),
            ("WARDWATCH_MQTT_CLIENT_ID", "wardwatch-untrusting"),
        ],
        "Cannot connect to the MQTT broker",
    )
    .await;
    assert!(log.contains("TLS: invalid peer certificate"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_speaks_https_only_when_given_a_certificate() {
    let chain = Chain::new();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ww.db");
    let db_url = format!("sqlite://{}", db.display());
    let cert = chain.cert();
    let key = chain.key();
    let env = [
        ("WARDWATCH_MQTT_URL", ""),
        ("WARDWATCH_MQTT_EMBEDDED_LISTEN", "127.0.0.1:0"),
        ("WARDWATCH_DATABASE_URL", db_url.as_str()),
        ("WARDWATCH_HTTP_TLS_CERT_FILE", cert.to_str().unwrap()),
        ("WARDWATCH_HTTP_TLS_KEY_FILE", key.to_str().unwrap()),
    ];
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = wardwatch();
    cmd.arg("serve")
        .env("WARDWATCH_HTTP_ADDR", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let path = log.path().to_path_buf();
    let port = eventually("the HTTPS listener's port", || {
        let path = path.clone();
        async move {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            logged_port(&text, "HTTP listening", "addr")
        }
    })
    .await;
    assert!(std::fs::read_to_string(&path).unwrap().contains("https"));
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(chain.ca()).unwrap()).unwrap(),
        )
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}/healthz");
    let status = eventually("HTTPS /healthz answers 200", || {
        let client = client.clone();
        let url = url.clone();
        async move {
            let r = client.get(&url).send().await.ok()?;
            (r.status() == 200).then_some(r.status())
        }
    })
    .await;
    assert_eq!(status, 200);
    // Plain HTTP on the same port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // A client that does not trust the CA is refused.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(true)
        .build()
        .unwrap();
    assert!(untrusting.get(&url).send().await.is_err());
    let _ = child.kill();
    let _ = child.wait();
    // Half a pair is refused at start, with the reason.
    let out = wardwatch()
        .arg("serve")
        .env("WARDWATCH_MQTT_URL", "")
        .env("WARDWATCH_DATABASE_URL", &db_url)
        .env("WARDWATCH_HTTP_TLS_CERT_FILE", &cert)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("go together"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sslmode_is_honoured() {
    let broker = Broker::start().await;
    let db = Db::create("pgtls").await;
    // The local server has TLS on (Debian's snakeoil certificate): with
    // `require` the engine's connections are encrypted.
    let url = format!("{}?sslmode=require", db.url);
    let _engine = Engine::start(&broker.engine_url(), &url, &unique("eng")).await;
    let encrypted = db
        .count(&format!(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = '{}' AND s.ssl AND a.pid <> pg_backend_pid()",
            db.name
        ))
        .await;
    assert!(encrypted >= 1, "the engine's connections use TLS");
    // `verify-full` against a CA that did not sign the server's
    // certificate is refused with the reason.
    let chain = Chain::new();
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        db.url,
        chain.ca().display()
    );
    let out = wardwatch()
        .arg("migrate")
        .env("WARDWATCH_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
}
