//! From a pod's spec to a process, as pure functions: the environment
//! (values, downward-API fields, ConfigMap and Secret keys, `$(VAR)`
//! references), the command line, and which image maps to which binary.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::{Container, Pod};

/// Keys of the ConfigMaps and Secrets a pod refers to, fetched beforehand.
#[derive(Debug, Default)]
pub struct Objects {
    pub config_maps: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

/// What the downward API reads that is not in the pod object yet.
#[derive(Debug)]
pub struct Assigned<'a> {
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
}

/// An image this agent can run: its repository (the image name without
/// tag or digest) and the binary that stands for its entrypoint.
#[derive(Debug, Clone)]
pub struct ImageMap {
    pub repository: String,
    pub entrypoint: PathBuf,
}

impl std::str::FromStr for ImageMap {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let (repository, path) = s.split_once('=').context(
            "--image takes REPOSITORY=BINARY, e.g. sluice/broker=target/debug/sluice-broker",
        )?;
        Ok(Self {
            repository: repository.to_string(),
            entrypoint: PathBuf::from(path),
        })
    }
}

/// `sluice/broker:latest` -> `sluice/broker`; `host:5000/a/b@sha256:..` -> `host:5000/a/b`.
pub fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

pub fn resolve_image<'a>(image: &str, images: &'a [ImageMap]) -> Result<&'a ImageMap> {
    let repo = repository(image);
    let bare = repo.strip_prefix("docker.io/").unwrap_or(repo);
    images
        .iter()
        .find(|m| m.repository == repo || m.repository == bare)
        .with_context(|| {
            let known: Vec<_> = images.iter().map(|m| m.repository.as_str()).collect();
            format!(
                "image {image} is not one this node runs as a process (it runs {})",
                known.join(", ")
            )
        })
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, an
/// undefined reference stays as written, `$$` is a literal `$`.
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("$(")
            && let Some(end) = inner.find(')')
            && let Some((_, v)) = env.iter().rev().find(|(k, _)| k == &inner[..end])
        {
            out.push_str(v);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// `metadata.labels['apps.kubernetes.io/pod-index']` and friends.
pub fn field(pod: &Pod, assigned: &Assigned, path: &str) -> Result<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| -> Option<String> {
        let key = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => assigned.pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => assigned.host_ip.to_string(),
        _ => {
            if let Some(v) = keyed("metadata.labels", meta.labels.as_ref()) {
                v
            } else if let Some(v) = keyed("metadata.annotations", meta.annotations.as_ref()) {
                v
            } else {
                bail!("the downward API field {path} is not supported by process-kubelet")
            }
        }
    };
    Ok(value)
}

fn text(bytes: &[u8], what: &str) -> Result<String> {
    String::from_utf8(bytes.to_vec()).with_context(|| format!("{what} is not UTF-8"))
}

/// The ConfigMap and Secret names a pod's environment and volumes read.
pub fn referenced(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return (cms, secrets);
    };
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for e in c.env.iter().flatten() {
            if let Some(from) = &e.value_from {
                if let Some(r) = &from.config_map_key_ref {
                    cms.push(r.name.clone());
                }
                if let Some(r) = &from.secret_key_ref {
                    secrets.push(r.name.clone());
                }
            }
        }
        for e in c.env_from.iter().flatten() {
            if let Some(r) = &e.config_map_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &e.secret_ref {
                secrets.push(r.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(cm) = &v.config_map {
            cms.push(cm.name.clone());
        }
        if let Some(s) = &v.secret
            && let Some(n) = &s.secret_name
        {
            secrets.push(n.clone());
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &src.config_map {
                cms.push(cm.name.clone());
            }
            if let Some(s) = &src.secret {
                secrets.push(s.name.clone());
            }
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

/// The container's environment in order, as the kubelet builds it: the
/// service variables for the API server, then `envFrom`, then `env` (each
/// value expanded against what came before).
pub fn environment(
    pod: &Pod,
    c: &Container,
    assigned: &Assigned,
    objects: &Objects,
    apiserver: (&str, u16),
) -> Result<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        (
            "HOSTNAME".into(),
            pod.spec
                .as_ref()
                .and_then(|s| s.hostname.clone())
                .or_else(|| pod.metadata.name.clone())
                .unwrap_or_default(),
        ),
        ("KUBERNETES_SERVICE_HOST".into(), apiserver.0.into()),
        ("KUBERNETES_SERVICE_PORT".into(), apiserver.1.to_string()),
        (
            "KUBERNETES_SERVICE_PORT_HTTPS".into(),
            apiserver.1.to_string(),
        ),
        (
            "KUBERNETES_PORT".into(),
            format!("tcp://{}:{}", apiserver.0, apiserver.1),
        ),
    ];
    let lookup = |maps: &BTreeMap<String, BTreeMap<String, Vec<u8>>>,
                  kind: &str,
                  name: &str,
                  key: &str,
                  optional: bool|
     -> Result<Option<String>> {
        match maps.get(name).and_then(|m| m.get(key)) {
            Some(v) => Ok(Some(text(v, &format!("{kind} {name} key {key}"))?)),
            None if optional => Ok(None),
            None => bail!("{kind} {name} has no key {key}"),
        }
    };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (maps, kind, name, optional) = if let Some(r) = &from.config_map_ref {
            (&objects.config_maps, "ConfigMap", &r.name, r.optional)
        } else if let Some(r) = &from.secret_ref {
            (&objects.secrets, "Secret", &r.name, r.optional)
        } else {
            continue;
        };
        match maps.get(name) {
            Some(m) => {
                for (k, v) in m {
                    env.push((format!("{prefix}{k}"), text(v, &format!("{kind} {name}"))?));
                }
            }
            None if optional == Some(true) => {}
            None => bail!("{kind} {name} not found"),
        }
    }
    for e in c.env.iter().flatten() {
        let value = match &e.value_from {
            None => expand(e.value.as_deref().unwrap_or_default(), &env),
            Some(from) => {
                if let Some(f) = &from.field_ref {
                    field(pod, assigned, &f.field_path)?
                } else if let Some(r) = &from.config_map_key_ref {
                    match lookup(
                        &objects.config_maps,
                        "ConfigMap",
                        &r.name,
                        &r.key,
                        r.optional == Some(true),
                    )? {
                        Some(v) => v,
                        None => continue,
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    match lookup(
                        &objects.secrets,
                        "Secret",
                        &r.name,
                        &r.key,
                        r.optional == Some(true),
                    )? {
                        Some(v) => v,
                        None => continue,
                    }
                } else {
                    bail!(
                        "env {}: only fieldRef, configMapKeyRef and secretKeyRef are supported",
                        e.name
                    )
                }
            }
        };
        env.push((e.name.clone(), value));
    }
    Ok(env)
}

/// The command line: the image's entrypoint (or `command`, which must name
/// the image's binary) and `args`, both expanded against the environment.
pub fn command_line(
    c: &Container,
    image: &ImageMap,
    env: &[(String, String)],
) -> Result<(PathBuf, Vec<String>)> {
    let mut args: Vec<String> = Vec::new();
    if let Some(cmd) = c.command.as_ref().filter(|c| !c.is_empty()) {
        let want = image.entrypoint.file_name();
        let given = std::path::Path::new(&cmd[0]).file_name();
        if want != given {
            bail!(
                "command {} is not the binary of image {} ({}): process-kubelet runs only that binary",
                cmd[0],
                image.repository,
                image.entrypoint.display()
            );
        }
        args.extend(cmd[1..].iter().map(|a| expand(a, env)));
    }
    args.extend(c.args.iter().flatten().map(|a| expand(a, env)));
    Ok((image.entrypoint.clone(), args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let env = vars(&[("POD_NAME", "demo-0"), ("X", "1")]);
        assert_eq!(
            expand("$(POD_NAME).demo-brokers.kafka.svc:9092", &env),
            "demo-0.demo-brokers.kafka.svc:9092"
        );
        assert_eq!(expand("$(MISSING)/$(X)", &env), "$(MISSING)/1");
        assert_eq!(expand("$$(X) costs $5", &env), "$(X) costs $5");
        assert_eq!(expand("$(X", &env), "$(X");
    }

    #[test]
    fn image_repositories() {
        assert_eq!(repository("sluice/broker:latest"), "sluice/broker");
        assert_eq!(
            repository("host:5000/sluice/broker"),
            "host:5000/sluice/broker"
        );
        assert_eq!(repository("sluice/broker@sha256:ab"), "sluice/broker");
        let images = vec!["sluice/broker=/bin/b".parse::<ImageMap>().expect("map")];
        assert!(resolve_image("docker.io/sluice/broker:0.1", &images).is_ok());
        let err = resolve_image("nginx:1", &images).expect_err("unknown image");
        assert!(err.to_string().contains("nginx:1"), "{err}");
    }

    #[test]
    fn environment_from_the_downward_api_and_config_maps() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "demo-1", "namespace": "kafka",
                         "labels": {"apps.kubernetes.io/pod-index": "1"}},
            "spec": {"containers": [{
                "name": "broker",
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}},
                    {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "ADV", "value": "$(POD_NAME):9092"},
                    {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "level"}}}
                ]
            }]}
        }))
        .expect("pod");
        let mut objects = Objects::default();
        objects.config_maps.insert(
            "cfg".into(),
            [("level".to_string(), b"debug".to_vec())].into(),
        );
        let assigned = Assigned {
            pod_ip: "127.1.1.2",
            host_ip: "127.1.1.1",
        };
        let c = &pod.spec.as_ref().expect("spec").containers[0];
        let env = environment(&pod, c, &assigned, &objects, ("127.0.0.1", 6443)).expect("env");
        let get = |k: &str| {
            env.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("ID"), Some("1"));
        assert_eq!(get("IP"), Some("127.1.1.2"));
        assert_eq!(get("ADV"), Some("demo-1:9092"));
        assert_eq!(get("LEVEL"), Some("debug"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT"), Some("6443"));
        assert_eq!(referenced(&pod), (vec!["cfg".to_string()], vec![]));

        objects.config_maps.clear();
        let err = environment(&pod, c, &assigned, &objects, ("127.0.0.1", 1)).expect_err("missing");
        assert!(err.to_string().contains("ConfigMap cfg"), "{err}");
    }

    #[test]
    fn command_must_name_the_images_binary() {
        let image: ImageMap = "sluice/operator=/repo/target/debug/sluice-operator"
            .parse()
            .expect("map");
        let c: Container = serde_json::from_value(json!({
            "name": "operator", "args": ["--metrics-addr=$(IP):8080"]
        }))
        .expect("container");
        let (bin, args) = command_line(&c, &image, &vars(&[("IP", "127.1.1.3")])).expect("cmd");
        assert_eq!(bin, PathBuf::from("/repo/target/debug/sluice-operator"));
        assert_eq!(args, vec!["--metrics-addr=127.1.1.3:8080"]);
        let c: Container = serde_json::from_value(json!({
            "name": "x", "command": ["/bin/sh", "-c", "true"]
        }))
        .expect("container");
        assert!(command_line(&c, &image, &[]).is_err());
    }
}
