//! Listeners, TLS and SASL against real broker processes, with kcat
//! (Debian's librdkafka 2.0.2), the `rdkafka` crate (librdkafka 2.12) and
//! Kafka's own ConfigCommand (the Java admin client) as the clients; the
//! refusals a client must see, each with nothing written.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sluice_e2e::certs::{Issued, TestCa};
use sluice_e2e::{BrokerProcess, KcatRun, free_port_list, java, wire};

/// Runs kcat with `args`, bounded to `secs` seconds.
fn kcat_run(args: &[String], stdin: Option<&str>, secs: u32) -> Result<KcatRun> {
    sluice_e2e::kcat_run(args, stdin.map(str::as_bytes), secs)
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `-X name=value` for each pair.
fn x(settings: &[(&str, &str)]) -> Vec<String> {
    settings
        .iter()
        .flat_map(|(k, v)| ["-X".to_string(), format!("{k}={v}")])
        .collect()
}

fn produce(
    bootstrap: &str,
    topic: &str,
    settings: &[(&str, &str)],
    lines: &str,
) -> Result<KcatRun> {
    let mut a = args(&["-b", bootstrap, "-P", "-t", topic, "-X", "acks=all"]);
    a.extend(x(settings));
    kcat_run(&a, Some(lines), 30)
}

fn consume(bootstrap: &str, topic: &str, settings: &[(&str, &str)]) -> Result<KcatRun> {
    let mut a = args(&[
        "-b",
        bootstrap,
        "-C",
        "-t",
        topic,
        "-o",
        "beginning",
        "-e",
        "-q",
    ]);
    a.extend(x(settings));
    kcat_run(&a, None, 30)
}

fn list(bootstrap: &str, settings: &[(&str, &str)], secs: u32) -> Result<KcatRun> {
    let mut a = args(&["-b", bootstrap, "-L", "-m", "5"]);
    a.extend(x(settings));
    kcat_run(&a, None, secs)
}

/// The high watermark of partition 0 of `topic`, asked over `plaintext`.
fn high_watermark(plaintext: &str, topic: &str) -> Result<i64> {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                ]),
        ]);
    let mut c = wire::connect(plaintext)?;
    wire::send(&mut c, &wire::frame(ApiKey::ListOffsets, 7, 1, &req)?)?;
    let (_, resp): (i32, ListOffsetsResponse) =
        wire::read_response(&mut c, ApiKey::ListOffsets, 7)?;
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .context("no partition in ListOffsets")?;
    if p.error_code == 3 {
        return Ok(0);
    }
    ensure!(p.error_code == 0, "ListOffsets error {}", p.error_code);
    Ok(p.offset)
}

fn metric(b: &BrokerProcess, name: &str, labels: &str) -> Result<u64> {
    let text = b.metrics()?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum())
}

struct Pki {
    ca: std::path::PathBuf,
    server: Issued,
    authority: TestCa,
}

fn pki(dir: &Path) -> Result<Pki> {
    let authority = TestCa::new("Sluice test CA")?;
    let ca = authority.write(&dir.join("ca.crt"))?;
    let server = authority.server(dir, "broker")?;
    Ok(Pki {
        ca,
        server,
        authority,
    })
}

fn refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

fn trusting(ca: &str) -> Vec<(&str, &str)> {
    vec![("security.protocol", "ssl"), ("ssl.ca.location", ca)]
}

fn sasl_ssl<'a>(ca: &'a str, mech: &'a str, user: &'a str, pw: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("security.protocol", "sasl_ssl"),
        ("ssl.ca.location", ca),
        ("sasl.mechanisms", mech),
        ("sasl.username", user),
        ("sasl.password", pw),
        ("message.timeout.ms", "6000"),
    ]
}

/// A broker with a PLAINTEXT listener and one more, named as its
/// `protocol`, with `extra` flags; the broker and the two ports.
fn two_listeners(dir: &Path, protocol: &str, extra: &[&str]) -> Result<(BrokerProcess, Vec<u16>)> {
    let ports = free_port_list(2)?;
    let listeners = format!(
        "PLAINTEXT://127.0.0.1:{},{protocol}://127.0.0.1:{}",
        ports[0], ports[1]
    );
    let mut args = vec!["--listeners", listeners.as_str()];
    args.extend_from_slice(extra);
    let b = BrokerProcess::start_listening(&dir.join("b"), ports[0], &args)?;
    Ok((b, ports))
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn each_listener_gives_the_addresses_of_its_own_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ports = free_port_list(2)?;
    let listeners = format!(
        "PLAINTEXT://127.0.0.1:{},CLIENT://127.0.0.1:{}",
        ports[0], ports[1]
    );
    let advertised = format!(
        "PLAINTEXT://127.0.0.1:{},CLIENT://localhost:{}",
        ports[0], ports[1]
    );
    let _b = BrokerProcess::start_listening(
        &dir.path().join("b"),
        ports[0],
        &[
            "--listeners",
            &listeners,
            "--advertised-listeners",
            &advertised,
            "--listener-security-protocol-map",
            "PLAINTEXT:PLAINTEXT,CLIENT:PLAINTEXT",
        ],
    )?;
    let on_plain = list(&format!("127.0.0.1:{}", ports[0]), &[], 20)?;
    ensure!(on_plain.ok, "kcat -L: {}", on_plain.stderr);
    ensure!(
        on_plain
            .stdout
            .contains(&format!("at 127.0.0.1:{}", ports[0])),
        "{}",
        on_plain.stdout
    );
    let on_client = list(&format!("127.0.0.1:{}", ports[1]), &[], 20)?;
    ensure!(on_client.ok, "kcat -L: {}", on_client.stderr);
    ensure!(
        on_client
            .stdout
            .contains(&format!("at localhost:{}", ports[1])),
        "the CLIENT listener must give its own advertised address: {}",
        on_client.stdout
    );
    Ok(())
}

#[test]
fn tls_produce_and_consume_and_what_a_wrong_client_sees() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = pki(dir.path())?;
    let (b, ports) = two_listeners(
        dir.path(),
        "SSL",
        &["--ssl-keystore-location", &path(&pki.server.keystore)],
    )?;
    let plain = format!("127.0.0.1:{}", ports[0]);
    let tls = format!("127.0.0.1:{}", ports[1]);
    let ca = path(&pki.ca);
    let ssl = [
        ("security.protocol", "ssl"),
        ("ssl.ca.location", ca.as_str()),
    ];
    let lines: String = (0..50).map(|i| format!("tls-record-{i}\n")).collect();
    let p = produce(&tls, "over-tls", &ssl, &lines)?;
    ensure!(p.ok, "produce over TLS: {}", p.stderr);
    let c = consume(&tls, "over-tls", &ssl)?;
    ensure!(c.ok, "consume over TLS: {}", c.stderr);
    ensure!(c.stdout == lines, "consumed over TLS: {:?}", c.stdout);
    let m = list(&tls, &ssl, 20)?;
    ensure!(
        m.stdout.contains(&format!("at 127.0.0.1:{}", ports[1])),
        "metadata on the SSL listener names the SSL port: {}",
        m.stdout
    );

    // A plaintext client on the TLS port gets no answer to anything and
    // writes nothing.
    let before = high_watermark(&plain, "over-tls")?;
    let r = produce(
        &tls,
        "over-tls",
        &[("message.timeout.ms", "4000")],
        "never\n",
    )?;
    ensure!(!r.ok, "a plaintext producer on the TLS port must fail");
    // A client that does not trust the broker's CA refuses it.
    let other = TestCa::new("another CA")?;
    let other_ca = path(&other.write(&dir.path().join("other-ca.crt"))?);
    let untrusting = [
        ("security.protocol", "ssl"),
        ("ssl.ca.location", other_ca.as_str()),
        ("message.timeout.ms", "4000"),
    ];
    let r = produce(&tls, "over-tls", &untrusting, "never\n")?;
    ensure!(!r.ok, "a client that does not trust the CA must fail");
    ensure!(
        r.stderr.contains("certificate verify failed") || r.stderr.contains("SSL handshake failed"),
        "{}",
        r.stderr
    );
    ensure!(
        high_watermark(&plain, "over-tls")? == before,
        "nothing written"
    );
    ensure!(
        metric(
            &b,
            "sluice_network_authentication_failures_total",
            "mechanism=\"TLS\""
        )? >= 1,
        "failed TLS handshakes are counted"
    );
    Ok(())
}

#[test]
fn mutual_tls_names_the_principal_and_refuses_bad_certificates() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = pki(dir.path())?;
    let (b, ports) = two_listeners(
        dir.path(),
        "SSL",
        &[
            "--ssl-keystore-location",
            &path(&pki.server.keystore),
            "--ssl-truststore-location",
            &path(&pki.ca),
            "--ssl-client-auth",
            "required",
            "--ssl-principal-mapping-rules",
            "RULE:^CN=([^,]*),.*$/$1/L,DEFAULT",
            "--logging-level",
            "info,sluice_broker::server=debug",
        ],
    )?;
    let plain = format!("127.0.0.1:{}", ports[0]);
    let tls = format!("127.0.0.1:{}", ports[1]);
    let ca = path(&pki.ca);
    let with_cert = |c: &Issued| -> Vec<(String, String)> {
        vec![
            ("security.protocol".into(), "ssl".into()),
            ("ssl.ca.location".into(), ca.clone()),
            ("ssl.certificate.location".into(), path(&c.cert)),
            ("ssl.key.location".into(), path(&c.key)),
            ("message.timeout.ms".into(), "5000".into()),
        ]
    };
    let writer = pki.authority.client(dir.path(), "writer", "Writer")?;
    let good = with_cert(&writer);
    let p = produce(&tls, "mtls", &refs(&good), "one\ntwo\n")?;
    ensure!(p.ok, "produce with a client certificate: {}", p.stderr);
    let c = consume(&tls, "mtls", &refs(&good))?;
    ensure!(c.stdout == "one\ntwo\n", "{:?} {}", c.stdout, c.stderr);
    ensure!(
        b.log().contains("principal=User:writer"),
        "the principal comes from the certificate's CN by the mapping rule"
    );

    let before = high_watermark(&plain, "mtls")?;
    // No certificate at all.
    let ssl_only = [
        ("security.protocol", "ssl"),
        ("ssl.ca.location", ca.as_str()),
        ("message.timeout.ms", "4000"),
    ];
    let r = produce(&tls, "mtls", &ssl_only, "never\n")?;
    ensure!(!r.ok, "no client certificate must be refused: {}", r.stdout);
    // A certificate from a CA the broker does not trust.
    let stranger_ca = TestCa::new("stranger CA")?;
    let stranger = stranger_ca.client(dir.path(), "stranger", "stranger")?;
    let r = produce(&tls, "mtls", &refs(&with_cert(&stranger)), "never\n")?;
    ensure!(!r.ok, "an untrusted client certificate must be refused");
    // An expired certificate from the right CA.
    let expired = pki
        .authority
        .expired_client(dir.path(), "expired", "expired")?;
    let r = produce(&tls, "mtls", &refs(&with_cert(&expired)), "never\n")?;
    ensure!(!r.ok, "an expired client certificate must be refused");
    ensure!(high_watermark(&plain, "mtls")? == before, "nothing written");
    let failures = metric(
        &b,
        "sluice_network_authentication_failures_total",
        "mechanism=\"TLS\"",
    )?;
    ensure!(
        failures >= 3,
        "three refused handshakes counted, got {failures}"
    );
    ensure!(
        b.log().contains("failed authentication (TLS handshake)"),
        "refusals are logged"
    );
    Ok(())
}

/// Kafka's `listener.name.<listener>.ssl.client.auth` in a properties
/// file: one TLS listener asks for no certificate, the other requires one.
#[test]
fn one_listener_requires_client_certificates_and_another_does_not() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = pki(dir.path())?;
    let ports = free_port_list(3)?;
    let file = dir.path().join("server.properties");
    std::fs::write(
        &file,
        format!(
            "listeners=PLAINTEXT://127.0.0.1:{p0},TLS://127.0.0.1:{p1},MTLS://127.0.0.1:{p2}\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,TLS:SSL,MTLS:SSL\n\
             ssl.keystore.location={key}\n\
             ssl.truststore.location={ca}\n\
             listener.name.mtls.ssl.client.auth=required\n",
            p0 = ports[0],
            p1 = ports[1],
            p2 = ports[2],
            key = path(&pki.server.keystore),
            ca = path(&pki.ca),
        ),
    )?;
    let config = path(&file);
    // The harness names the listeners on the command line too (the same).
    let listeners = format!(
        "PLAINTEXT://127.0.0.1:{},TLS://127.0.0.1:{},MTLS://127.0.0.1:{}",
        ports[0], ports[1], ports[2]
    );
    let b = BrokerProcess::start_listening(
        &dir.path().join("b"),
        ports[0],
        &["--listeners", &listeners, "--config", &config],
    )?;
    let plain = format!("127.0.0.1:{}", ports[0]);
    let tls = format!("127.0.0.1:{}", ports[1]);
    let mtls = format!("127.0.0.1:{}", ports[2]);
    let ca = path(&pki.ca);
    let no_cert = [
        ("security.protocol", "ssl"),
        ("ssl.ca.location", ca.as_str()),
        ("message.timeout.ms", "5000"),
    ];
    let p = produce(&tls, "per-listener", &no_cert, "one\n")?;
    ensure!(
        p.ok,
        "the TLS listener takes a client without a certificate: {}",
        p.stderr
    );
    let before = high_watermark(&plain, "per-listener")?;
    let r = produce(&mtls, "per-listener", &no_cert, "never\n")?;
    ensure!(
        !r.ok,
        "the MTLS listener requires a client certificate: {}",
        r.stdout
    );
    ensure!(
        high_watermark(&plain, "per-listener")? == before,
        "nothing written"
    );
    let client = pki.authority.client(dir.path(), "app", "app")?;
    let (cert, key) = (path(&client.cert), path(&client.key));
    let with_cert = [
        ("security.protocol", "ssl"),
        ("ssl.ca.location", ca.as_str()),
        ("ssl.certificate.location", cert.as_str()),
        ("ssl.key.location", key.as_str()),
        ("message.timeout.ms", "5000"),
    ];
    let p = produce(&mtls, "per-listener", &with_cert, "two\n")?;
    ensure!(
        p.ok,
        "with a certificate the MTLS listener serves: {}",
        p.stderr
    );
    let c = consume(&tls, "per-listener", &no_cert)?;
    ensure!(c.stdout == "one\ntwo\n", "{:?} {}", c.stdout, c.stderr);
    drop(b);

    // A per-listener setting for a listener that is not there, or not TLS.
    for (line, needle) in [
        (
            "listener.name.other.ssl.client.auth=required",
            "names no listener",
        ),
        (
            "listener.name.plaintext.ssl.client.auth=required",
            "not SSL or SASL_SSL",
        ),
        (
            "listener.name.mtls.ssl.client.auth=always",
            "is not none, requested or required",
        ),
    ] {
        let text = std::fs::read_to_string(&file)?
            .replace("listener.name.mtls.ssl.client.auth=required", line);
        let bad = dir.path().join("bad.properties");
        std::fs::write(&bad, text)?;
        let out = Command::new(sluice_e2e::broker_bin())
            .args([
                "--config",
                &path(&bad),
                "--log-dirs",
                &path(&dir.path().join("d")),
            ])
            .output()?;
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        ensure!(!out.status.success(), "{line} must not start");
        ensure!(
            text.contains(needle) && text.contains("ssl.client.auth"),
            "{line}: {text}"
        );
    }
    Ok(())
}

#[test]
fn a_renewed_certificate_is_served_without_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = pki(dir.path())?;
    let ports = free_port_list(1)?;
    let listeners = format!("SSL://127.0.0.1:{}", ports[0]);
    let keystore = dir.path().join("live.pem");
    std::fs::copy(&pki.server.keystore, &keystore)?;
    let _b = BrokerProcess::start_listening(
        &dir.path().join("b"),
        ports[0],
        &[
            "--listeners",
            &listeners,
            "--ssl-keystore-location",
            &path(&keystore),
        ],
    )?;
    let tls = format!("127.0.0.1:{}", ports[0]);
    let old_ca = path(&pki.ca);
    let renewed_by = TestCa::new("the next CA")?;
    let new_ca = path(&renewed_by.write(&dir.path().join("next-ca.crt"))?);
    let renewed = renewed_by.server(dir.path(), "renewed")?;
    ensure!(
        list(&tls, &trusting(&old_ca), 20)?.ok,
        "the first certificate is served"
    );
    // The renewal lands as one rename, as a Secret update does.
    let tmp = dir.path().join("live.pem.new");
    std::fs::copy(&renewed.keystore, &tmp)?;
    std::fs::rename(&tmp, &keystore)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = list(&tls, &trusting(&new_ca), 10)?;
        if r.ok && r.stdout.contains("broker") {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the renewed certificate was not served within 30 s: {}",
                r.stderr
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let r = list(&tls, &trusting(&old_ca), 10)?;
    ensure!(!r.ok, "the old certificate is no longer served");
    Ok(())
}

/// SCRAM-SHA-512 credentials created with Kafka's ConfigCommand.
fn add_scram_user(plain: &str, user: &str, password: &str, mechanism: &str) -> Result<()> {
    let config = format!("{mechanism}=[iterations=8192,password={password}]");
    let out = java::tool(
        "kafka.admin.ConfigCommand",
        &[
            "--bootstrap-server",
            plain,
            "--alter",
            "--add-config",
            &config,
            "--entity-type",
            "users",
            "--entity-name",
            user,
        ],
    )?;
    ensure!(out.contains("Completed updating config"), "{out}");
    Ok(())
}

#[test]
fn scram_over_sasl_ssl_with_credentials_from_kafka_config_command() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = pki(dir.path())?;
    let (b, ports) = two_listeners(
        dir.path(),
        "SASL_SSL",
        &[
            "--ssl-keystore-location",
            &path(&pki.server.keystore),
            "--connection-failed-authentication-delay-ms",
            "20",
        ],
    )?;
    let plain = format!("127.0.0.1:{}", ports[0]);
    let secure = format!("127.0.0.1:{}", ports[1]);
    add_scram_user(&plain, "alice", "alice-secret", "SCRAM-SHA-512")?;
    add_scram_user(&plain, "bob", "bob-secret", "SCRAM-SHA-256")?;
    let ca = path(&pki.ca);
    let sasl = |mech, user, pw| sasl_ssl(&ca, mech, user, pw);
    let alice = sasl("SCRAM-SHA-512", "alice", "alice-secret");
    let p = produce(&secure, "scram", &alice, "a1\na2\na3\n")?;
    ensure!(p.ok, "produce with SCRAM-SHA-512: {}", p.stderr);
    let c = consume(&secure, "scram", &alice)?;
    ensure!(c.stdout == "a1\na2\na3\n", "{:?} {}", c.stdout, c.stderr);
    let bob = sasl("SCRAM-SHA-256", "bob", "bob-secret");
    let c = consume(&secure, "scram", &bob)?;
    ensure!(
        c.stdout == "a1\na2\na3\n",
        "SCRAM-SHA-256: {:?} {}",
        c.stdout,
        c.stderr
    );
    ensure!(
        metric(
            &b,
            "sluice_network_authentications_total",
            "mechanism=\"SCRAM-SHA-512\""
        )? >= 2,
        "authentications are counted"
    );

    let before = high_watermark(&plain, "scram")?;
    for (what, settings) in [
        (
            "a wrong password",
            sasl("SCRAM-SHA-512", "alice", "not-her-password"),
        ),
        (
            "an unknown user",
            sasl("SCRAM-SHA-512", "mallory", "whatever"),
        ),
        (
            "a mechanism the user has no credential for",
            sasl("SCRAM-SHA-256", "alice", "alice-secret"),
        ),
        (
            "a mechanism the listener does not enable",
            sasl("PLAIN", "alice", "alice-secret"),
        ),
    ] {
        let r = produce(&secure, "scram", &settings, "never\n")?;
        ensure!(!r.ok, "{what} must be refused");
        ensure!(
            r.stderr.contains("Authentication failed")
                || r.stderr.contains("SASL")
                || r.stderr.contains("mechanism"),
            "{what}: the client is told: {}",
            r.stderr
        );
    }
    ensure!(
        high_watermark(&plain, "scram")? == before,
        "nothing written"
    );
    let log = b.log();
    ensure!(log.contains("failed authentication"), "refusals are logged");
    ensure!(
        !log.contains("not-her-password") && !log.contains("alice-secret"),
        "no password is ever logged"
    );
    ensure!(
        metric(&b, "sluice_network_authentication_failures_total", "SCRAM")? >= 3,
        "failures are counted"
    );
    Ok(())
}

#[test]
fn plain_against_the_users_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let users = dir.path().join("users");
    std::fs::write(&users, "# tests\ncarol=carol-secret\n")?;
    let (_b, ports) = two_listeners(
        dir.path(),
        "SASL_PLAINTEXT",
        &[
            "--sasl-enabled-mechanisms",
            "PLAIN,SCRAM-SHA-512",
            "--sasl-plain-users-file",
            &path(&users),
        ],
    )?;
    let plain = format!("127.0.0.1:{}", ports[0]);
    let sasl = format!("127.0.0.1:{}", ports[1]);
    let carol = |pw: &'static str| {
        vec![
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanisms", "PLAIN"),
            ("sasl.username", "carol"),
            ("sasl.password", pw),
            ("message.timeout.ms", "5000"),
        ]
    };
    let p = produce(&sasl, "plain-users", &carol("carol-secret"), "c1\n")?;
    ensure!(p.ok, "PLAIN produce: {}", p.stderr);
    let r = produce(&sasl, "plain-users", &carol("wrong"), "never\n")?;
    ensure!(!r.ok, "a wrong PLAIN password must be refused");
    ensure!(
        r.stderr.contains("Invalid username or password"),
        "{}",
        r.stderr
    );
    ensure!(
        high_watermark(&plain, "plain-users")? == 1,
        "only the authenticated record"
    );
    Ok(())
}

/// Raw frames on a SASL listener: what Kafka does with requests out of
/// place, checked at the wire.
#[test]
fn sasl_frames_out_of_order_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (_b, ports) = two_listeners(dir.path(), "SASL_PLAINTEXT", &[])?;
    let plain = format!("127.0.0.1:{}", ports[0]);
    let sasl = format!("127.0.0.1:{}", ports[1]);
    let s = |v: &str| StrBytes::from_string(v.into());

    // Metadata before authenticating: the connection is closed unanswered.
    let mut c = wire::connect(&sasl)?;
    wire::send(
        &mut c,
        &wire::frame(ApiKey::Metadata, 12, 1, &MetadataRequest::default())?,
    )?;
    ensure!(
        wire::closed_by_peer(&mut c),
        "metadata before SASL must close"
    );

    // ApiVersions is answered before authenticating.
    let mut c = wire::connect(&sasl)?;
    let versions = ApiVersionsRequest::default()
        .with_client_software_name(s("sluice-e2e"))
        .with_client_software_version(s("1"));
    wire::send(&mut c, &wire::frame(ApiKey::ApiVersions, 3, 1, &versions)?)?;
    let (_, v): (i32, ApiVersionsResponse) = wire::read_response(&mut c, ApiKey::ApiVersions, 3)?;
    ensure!(v.error_code == 0);
    ensure!(
        v.api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::SaslAuthenticate as i16)
    );

    // SaslAuthenticate without a handshake: ILLEGAL_SASL_STATE, then closed.
    let mut c = wire::connect(&sasl)?;
    let auth =
        SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from_static(b"\0a\0b"));
    wire::send(&mut c, &wire::frame(ApiKey::SaslAuthenticate, 2, 2, &auth)?)?;
    let (_, r): (i32, SaslAuthenticateResponse) =
        wire::read_response(&mut c, ApiKey::SaslAuthenticate, 2)?;
    ensure!(
        r.error_code == 34,
        "ILLEGAL_SASL_STATE, got {}",
        r.error_code
    );
    ensure!(
        wire::closed_by_peer(&mut c),
        "closed after ILLEGAL_SASL_STATE"
    );

    // A mechanism that is not enabled: UNSUPPORTED_SASL_MECHANISM with the
    // enabled ones, then closed.
    let mut c = wire::connect(&sasl)?;
    let hs = SaslHandshakeRequest::default().with_mechanism(s("GSSAPI"));
    wire::send(&mut c, &wire::frame(ApiKey::SaslHandshake, 1, 3, &hs)?)?;
    let (_, r): (i32, SaslHandshakeResponse) =
        wire::read_response(&mut c, ApiKey::SaslHandshake, 1)?;
    ensure!(
        r.error_code == 33,
        "UNSUPPORTED_SASL_MECHANISM, got {}",
        r.error_code
    );
    let names: Vec<&str> = r.mechanisms.iter().map(|m| m.as_str()).collect();
    ensure!(names == ["SCRAM-SHA-256", "SCRAM-SHA-512"], "{names:?}");
    ensure!(
        wire::closed_by_peer(&mut c),
        "closed after an unsupported mechanism"
    );

    // A malformed SCRAM first message: SASL_AUTHENTICATION_FAILED, closed.
    let mut c = wire::connect(&sasl)?;
    let hs = SaslHandshakeRequest::default().with_mechanism(s("SCRAM-SHA-512"));
    wire::send(&mut c, &wire::frame(ApiKey::SaslHandshake, 1, 4, &hs)?)?;
    let (_, r): (i32, SaslHandshakeResponse) =
        wire::read_response(&mut c, ApiKey::SaslHandshake, 1)?;
    ensure!(r.error_code == 0);
    let auth = SaslAuthenticateRequest::default()
        .with_auth_bytes(bytes::Bytes::from_static(b"garbage\xff"));
    wire::send(&mut c, &wire::frame(ApiKey::SaslAuthenticate, 2, 5, &auth)?)?;
    let (_, r): (i32, SaslAuthenticateResponse) =
        wire::read_response(&mut c, ApiKey::SaslAuthenticate, 2)?;
    ensure!(
        r.error_code == 58,
        "SASL_AUTHENTICATION_FAILED, got {}",
        r.error_code
    );
    ensure!(
        wire::closed_by_peer(&mut c),
        "closed after a failed authentication"
    );

    // An oversized token before authenticating: closed, nothing read.
    let mut c = wire::connect(&sasl)?;
    wire::send(&mut c, &wire::frame(ApiKey::SaslHandshake, 1, 6, &hs)?)?;
    let _: (i32, SaslHandshakeResponse) = wire::read_response(&mut c, ApiKey::SaslHandshake, 1)?;
    let mut huge = (8i32 << 20).to_be_bytes().to_vec();
    huge.extend_from_slice(&[0u8; 1024]);
    let _ = wire::send(&mut c, &huge);
    ensure!(
        wire::closed_by_peer(&mut c),
        "an 8 MiB frame before authenticating must close"
    );

    // SaslHandshake on a PLAINTEXT listener: ILLEGAL_SASL_STATE.
    let mut c = wire::connect(&plain)?;
    wire::send(&mut c, &wire::frame(ApiKey::SaslHandshake, 1, 7, &hs)?)?;
    let (_, r): (i32, SaslHandshakeResponse) =
        wire::read_response(&mut c, ApiKey::SaslHandshake, 1)?;
    ensure!(
        r.error_code == 34,
        "ILLEGAL_SASL_STATE on PLAINTEXT, got {}",
        r.error_code
    );
    Ok(())
}

#[test]
fn invalid_security_settings_are_named_at_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bin = sluice_e2e::broker_bin();
    let ports = free_port_list(1)?;
    let ssl = format!("SSL://127.0.0.1:{}", ports[0]);
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate")?;
    for (flags, needle) in [
        (vec!["--listeners", ssl.as_str()], "ssl.keystore.location"),
        (
            vec![
                "--listeners",
                ssl.as_str(),
                "--ssl-keystore-location",
                missing.to_str().unwrap_or(""),
            ],
            "missing.pem",
        ),
        (
            vec![
                "--listeners",
                ssl.as_str(),
                "--ssl-keystore-location",
                garbage.to_str().unwrap_or(""),
            ],
            "ssl.keystore.location",
        ),
        (
            vec![
                "--listeners",
                "PLAINTEXT://127.0.0.1:2,SASL_PLAINTEXT://127.0.0.1:1",
                "--sasl-enabled-mechanisms",
                "PLAIN",
            ],
            "sasl.plain.users.file",
        ),
        (vec!["--ssl-client-auth", "sometimes"], "ssl.client.auth"),
        (vec!["--ssl-keystore-type", "JKS"], "ssl.keystore.type"),
        (
            vec!["--authorizer-class-name", "com.example.MyAuthorizer"],
            "authorizer.class.name",
        ),
        (vec!["--super-users", "alice"], "super.users"),
        // The quorum listener: SSL or PLAINTEXT, and SSL needs both stores.
        (
            vec!["--internal-listener-security-protocol", "SASL_SSL"],
            "internal.listener.security.protocol",
        ),
        (
            vec![
                "--internal-listener-security-protocol",
                "SSL",
                "--ssl-keystore-location",
                garbage.to_str().unwrap_or(""),
            ],
            "ssl.truststore.location",
        ),
    ] {
        let out = Command::new(&bin)
            .args(&flags)
            .args(["--log-dirs", dir.path().join("d").to_str().unwrap_or("d")])
            .output()?;
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        ensure!(!out.status.success(), "{flags:?} must not start");
        ensure!(text.contains(needle), "{flags:?}: {text}");
    }
    Ok(())
}

/// Kafka's own kafka-acls tool (AclCommand, the Java admin client).
fn kafka_acls(plain: &str, args: &[&str]) -> Result<String> {
    let mut all = vec!["--bootstrap-server", plain];
    all.extend_from_slice(args);
    java::tool("org.apache.kafka.tools.AclCommand", &all)
}

#[test]
fn acls_from_kafka_acls_are_enforced_on_kcat() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let users = dir.path().join("users");
    std::fs::write(&users, "dave=dave-secret\n")?;
    let (_b, ports) = two_listeners(
        dir.path(),
        "SASL_PLAINTEXT",
        &[
            "--sasl-enabled-mechanisms",
            "PLAIN",
            "--sasl-plain-users-file",
            &path(&users),
            "--authorizer-class-name",
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            // The operator's PLAINTEXT (internal) listener is trusted.
            "--super-users",
            "User:ANONYMOUS",
        ],
    )?;
    let plain = format!("127.0.0.1:{}", ports[0]);
    let sasl = format!("127.0.0.1:{}", ports[1]);
    let dave = [
        ("security.protocol", "sasl_plaintext"),
        ("sasl.mechanisms", "PLAIN"),
        ("sasl.username", "dave"),
        ("sasl.password", "dave-secret"),
        ("message.timeout.ms", "5000"),
    ];
    // The admin (a super user) creates both topics.
    for t in ["dave-orders", "dave-secrets"] {
        let p = produce(&plain, t, &[], "admin\n")?;
        ensure!(p.ok, "admin produce to {t}: {}", p.stderr);
    }
    // Nothing granted: refused, and nothing written.
    let r = produce(&sasl, "dave-orders", &dave, "never\n")?;
    ensure!(!r.ok, "dave may not write without an ACL: {}", r.stdout);
    ensure!(
        r.stderr.contains("Topic authorization failed"),
        "{}",
        r.stderr
    );
    ensure!(
        high_watermark(&plain, "dave-orders")? == 1,
        "a refused write changed the log"
    );
    let out = kafka_acls(
        &plain,
        &[
            "--add",
            "--allow-principal",
            "User:dave",
            "--operation",
            "Write",
            "--operation",
            "Read",
            "--topic",
            "dave-orders",
        ],
    )?;
    ensure!(out.contains("operation=WRITE"), "{out}");
    let listed = kafka_acls(&plain, &["--list", "--topic", "dave-orders"])?;
    ensure!(
        listed.contains("principal=User:dave") && listed.contains("operation=READ"),
        "{listed}"
    );
    // kafka-acls returns once the controller has the ACLs: this broker
    // is the controller, and its image serves the next request.
    let p = produce(&sasl, "dave-orders", &dave, "d1\nd2\n")?;
    ensure!(p.ok, "dave writes with WRITE: {}", p.stderr);
    ensure!(
        high_watermark(&plain, "dave-orders")? == 3,
        "dave's records are written"
    );
    let s = produce(&sasl, "dave-secrets", &dave, "never\n")?;
    ensure!(
        !s.ok && s.stderr.contains("Topic authorization failed"),
        "{}",
        s.stderr
    );
    ensure!(
        high_watermark(&plain, "dave-secrets")? == 1,
        "nothing written to dave-secrets"
    );
    // The topic list does not leak what dave may not describe.
    let m = list(&sasl, &dave, 20)?;
    ensure!(m.ok, "kcat -L as dave: {}", m.stderr);
    ensure!(m.stdout.contains("\"dave-orders\""), "{}", m.stdout);
    ensure!(!m.stdout.contains("dave-secrets"), "leaked: {}", m.stdout);
    let removed = kafka_acls(
        &plain,
        &[
            "--remove",
            "--force",
            "--allow-principal",
            "User:dave",
            "--operation",
            "Write",
            "--topic",
            "dave-orders",
        ],
    )?;
    ensure!(!removed.contains("Error"), "{removed}");
    let gone = produce(&sasl, "dave-orders", &dave, "never\n")?;
    ensure!(!gone.ok, "WRITE removed: dave is refused again");
    ensure!(
        high_watermark(&plain, "dave-orders")? == 3,
        "nothing written after the removal"
    );
    Ok(())
}

#[test]
fn rdkafka_over_sasl_ssl_reauthenticates_before_the_session_ends() -> Result<()> {
    use rdkafka::ClientConfig;
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let dir = tempfile::tempdir()?;
    let pki = pki(dir.path())?;
    let (b, ports) = two_listeners(
        dir.path(),
        "SASL_SSL",
        &[
            "--ssl-keystore-location",
            &path(&pki.server.keystore),
            "--sasl-enabled-mechanisms",
            "SCRAM-SHA-512",
            // KIP-368: every SASL session lasts at most 2 s.
            "--connections-max-reauth-ms",
            "2000",
        ],
    )?;
    let plain = format!("127.0.0.1:{}", ports[0]);
    add_scram_user(&plain, "erin", "erin-secret", "SCRAM-SHA-512")?;
    let ca = path(&pki.ca);
    let config = || {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", format!("127.0.0.1:{}", ports[1]))
            .set("security.protocol", "sasl_ssl")
            .set("ssl.ca.location", &ca)
            .set("sasl.mechanisms", "SCRAM-SHA-512")
            .set("sasl.username", "erin")
            .set("sasl.password", "erin-secret");
        c
    };
    let admin: AdminClient<DefaultClientContext> = config().create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let created = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(admin.create_topics(
            &[NewTopic::new("reauth", 3, TopicReplication::Fixed(1))],
            &opts,
        ))?;
    ensure!(
        created.iter().all(|r| r.is_ok()),
        "admin CreateTopics: {created:?}"
    );
    let before = metric(&b, "sluice_network_authentications_total", "SCRAM-SHA-512")?;
    // One record every 50 ms for 7 s: the producer's connection outlives
    // three session lifetimes and must re-authenticate to keep writing.
    let producer: BaseProducer = config().set("linger.ms", "0").create()?;
    let sent = 140;
    for i in 0..sent {
        let value = format!("r{i}");
        let key = i.to_string();
        producer
            .send(BaseRecord::to("reauth").key(&key).payload(&value))
            .map_err(|(e, _)| e)?;
        producer.poll(Duration::from_millis(50));
    }
    producer.flush(Duration::from_secs(10))?;
    let after = metric(&b, "sluice_network_authentications_total", "SCRAM-SHA-512")?;
    ensure!(
        after >= before + 3,
        "the producer re-authenticated {} times over 7 s of 2 s sessions",
        after.saturating_sub(before)
    );
    ensure!(
        !b.log().contains("without re-authentication"),
        "a connection outlived its session: {}",
        b.log()
    );
    // A group consumer reads every record back over SASL_SSL.
    let consumer: BaseConsumer = config()
        .set("group.id", "reauth-readers")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&["reauth"])?;
    let mut got = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < sent && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m?;
            got.insert(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    ensure!(
        got.len() == sent,
        "consumed {} of {sent} records",
        got.len()
    );
    Ok(())
}

/// What the port at `addr` sends back to an HTTP/2 client preface (the
/// quorum's gRPC), over plaintext or a TLS client of `tls`: the bytes read
/// before it closed, within 5 s.
fn quorum_answer(addr: &str, tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> Vec<u8> {
    use std::io::{Read, Write};
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let Ok(mut tcp) = std::net::TcpStream::connect(addr) else {
        return Vec::new();
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
    let mut got = vec![0u8; 64];
    let n = match tls {
        None => tcp
            .write_all(PREFACE)
            .and_then(|()| tcp.read(&mut got))
            .unwrap_or(0),
        Some(c) => {
            let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("a name");
            let Ok(mut conn) = rustls::ClientConnection::new(c, name) else {
                return Vec::new();
            };
            let mut s = rustls::Stream::new(&mut conn, &mut tcp);
            s.write_all(PREFACE)
                .and_then(|()| s.flush())
                .and_then(|()| s.read(&mut got))
                .unwrap_or(0)
        }
    };
    got.truncate(n);
    got
}

/// An HTTP/2 SETTINGS frame: a 3-byte length, then type 4.
fn http2_settings(b: &[u8]) -> bool {
    b.len() >= 9 && b[3] == 4
}

/// A TLS client trusting `ca`, with `identity`'s certificate if any.
fn tls_client(
    ca: &Path,
    identity: Option<&sluice_e2e::certs::Issued>,
) -> Result<std::sync::Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(std::sync::Arc::new(match identity {
        Some(i) => {
            let chain = CertificateDer::pem_file_iter(&i.cert)?.collect::<Result<Vec<_>, _>>()?;
            b.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(&i.key)?)?
        }
        None => b.with_no_client_auth(),
    }))
}

#[test]
fn brokers_replicate_and_keep_their_quorum_over_mutual_tls() -> Result<()> {
    use rdkafka::ClientConfig;
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let dir = tempfile::tempdir()?;
    let pki = pki(dir.path())?;
    let n = 3;
    let ports = free_port_list(3 * n)?;
    let (plain, tls, internal) = (
        |i: usize| ports[3 * i],
        |i: usize| ports[3 * i + 1],
        |i: usize| ports[3 * i + 2],
    );
    let voters = (0..n)
        .map(|i| format!("{i}@127.0.0.1:{}", internal(i)))
        .collect::<Vec<_>>()
        .join(",");
    let keystore = path(&pki.server.keystore);
    let ca = path(&pki.ca);
    // The Kafka listeners also trust a clients CA, as the operator's
    // brokers do; the quorum trusts the brokers' CA alone.
    let clients = sluice_e2e::certs::TestCa::new("clients CA")?;
    let clients_ca = clients.write(&dir.path().join("clients-ca.crt"))?;
    let bundle = dir.path().join("bundle.crt");
    std::fs::write(
        &bundle,
        std::fs::read_to_string(&pki.ca)? + &std::fs::read_to_string(&clients_ca)?,
    )?;
    let bundle = path(&bundle);
    let mut brokers = Vec::new();
    for i in 0..n {
        let listeners = format!(
            "PLAINTEXT://127.0.0.1:{},SSL://127.0.0.1:{}",
            plain(i),
            tls(i)
        );
        let node = i.to_string();
        let grpc = format!("127.0.0.1:{}", internal(i));
        brokers.push(BrokerProcess::start_listening(
            &dir.path().join(format!("b{i}")),
            plain(i),
            &[
                "--node-id",
                &node,
                "--listeners",
                &listeners,
                // Followers fetch over SSL, and must show a certificate.
                "--inter-broker-listener-name",
                "SSL",
                "--ssl-keystore-location",
                &keystore,
                "--ssl-truststore-location",
                &bundle,
                "--ssl-client-auth",
                "required",
                "--internal-listener",
                &grpc,
                // The quorum too: the brokers register, elect and
                // replicate metadata over mutual TLS.
                "--internal-listener-security-protocol",
                "SSL",
                "--internal-listener-ssl-truststore-location",
                &ca,
                "--controller-quorum-voters",
                &voters,
                "--logging-level",
                "info,sluice_broker::server=debug",
            ],
        )?);
    }
    let bootstrap = format!("127.0.0.1:{}", plain(0));
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let topic = || {
        NewTopic::new("over-mtls", 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "3")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = rt.block_on(admin.create_topics(&[topic()], &opts))?;
        match r.first() {
            Some(Ok(_)) => break,
            // The brokers register and unfence in their own time.
            Some(Err(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(500))
            }
            other => bail!("CreateTopics RF 3: {other:?}"),
        }
    }
    // acks=all with min.insync.replicas=3: every write is acknowledged only
    // once both followers fetched it, over TLS.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()?;
    for i in 0..50 {
        let v = format!("m{i}");
        producer
            .send(BaseRecord::<(), _>::to("over-mtls").payload(&v))
            .map_err(|(e, _)| e)?;
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30))?;
    ensure!(
        producer.in_flight_count() == 0,
        "writes left unacknowledged"
    );
    // The leader answers ListOffsets; the others refuse it.
    let hw = (0..n)
        .filter_map(|i| high_watermark(&format!("127.0.0.1:{}", plain(i)), "over-mtls").ok())
        .max();
    ensure!(hw == Some(50), "the high watermark: {hw:?}");
    // Each leader saw its followers arrive on the SSL listener with the
    // brokers' certificate (principal User:CN=localhost,...).
    let authenticated = brokers
        .iter()
        .filter(|b| {
            b.log().contains("TLS client authenticated") && b.log().contains("CN=localhost")
        })
        .count();
    ensure!(authenticated >= 1, "no follower connected over mutual TLS");
    // The quorum port answers a peer with a certificate of the CA, and no
    // one else: not plaintext, not TLS without a certificate, not a
    // certificate of another CA.
    let quorum = format!("127.0.0.1:{}", internal(0));
    let admitted = quorum_answer(&quorum, Some(tls_client(&pki.ca, Some(&pki.server))?));
    ensure!(
        http2_settings(&admitted),
        "the quorum port did not answer a peer with the brokers' certificate: {admitted:?}"
    );
    let plain = quorum_answer(&quorum, None);
    ensure!(
        !http2_settings(&plain),
        "the quorum port answered plaintext"
    );
    let anonymous = quorum_answer(&quorum, Some(tls_client(&pki.ca, None)?));
    ensure!(
        !http2_settings(&anonymous),
        "the quorum port answered TLS without a certificate"
    );
    // A client certificate of the clients CA: good on the Kafka
    // listeners, refused by the quorum.
    let user = clients.client(dir.path(), "user", "app")?;
    let produced = produce(
        &format!("127.0.0.1:{}", tls(0)),
        "over-mtls",
        &refs(&[
            ("security.protocol".into(), "ssl".into()),
            ("ssl.ca.location".into(), ca.clone()),
            ("ssl.certificate.location".into(), path(&user.cert)),
            ("ssl.key.location".into(), path(&user.key)),
        ]),
        "u1\n",
    )?;
    ensure!(
        produced.ok,
        "a client of the clients CA on the SSL listener: {}",
        produced.stderr
    );
    let foreign = quorum_answer(&quorum, Some(tls_client(&pki.ca, Some(&user))?));
    ensure!(
        !http2_settings(&foreign),
        "the quorum port answered a certificate of the clients CA"
    );
    ensure!(
        brokers[0]
            .log()
            .contains("quorum listener: TLS handshake refused"),
        "the refusals are not logged"
    );
    Ok(())
}
