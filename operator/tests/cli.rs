//! The `sluice-operator` binary's command line: refuses bad flags and
//! exits with a clear error when no Kubernetes API can be found.

use std::process::Command;

fn operator() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice-operator"));
    c.env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("HOME", "/nonexistent")
        .env_remove("RUST_LOG");
    c
}

#[test]
fn without_an_api_server_it_says_so_and_fails() {
    let out = operator()
        .args(["--log-format", "text", "--metrics-addr", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("no Kubernetes API configuration"), "{text}");
}

#[test]
fn bad_flags_are_refused_by_name() {
    for (args, needle) in [
        (
            vec!["--bootstrap-override", "demo"],
            "expected NAMESPACE/NAME=HOST:PORT",
        ),
        (vec!["--log-format", "xml"], "--log-format"),
        (vec!["--leader-election", "maybe"], "--leader-election"),
        (vec!["--metrics-addr", "nowhere"], "--metrics-addr"),
    ] {
        let out = operator().args(&args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
