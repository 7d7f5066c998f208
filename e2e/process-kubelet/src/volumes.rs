//! A pod's volumes as directories: ConfigMaps, Secrets, projected
//! service-account tokens and downward-API files written into the pod's
//! own directory; a PersistentVolumeClaim is the directory of its bound
//! volume (see `provisioner`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, ServiceAccount,
};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::spec::{Assigned, Objects, field};

fn write_keys(
    dir: &Path,
    data: Option<&BTreeMap<String, Vec<u8>>>,
    items: Option<&Vec<KeyToPath>>,
    what: &str,
    optional: bool,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let Some(data) = data else {
        if optional {
            return Ok(());
        }
        bail!("{what} not found");
    };
    let files: Vec<(String, &Vec<u8>)> = match items {
        Some(items) => items
            .iter()
            .map(|i| {
                data.get(&i.key)
                    .map(|v| (i.path.clone(), v))
                    .with_context(|| format!("{what} has no key {}", i.key))
            })
            .collect::<Result<_>>()?,
        None => data.iter().map(|(k, v)| (k.clone(), v)).collect(),
    };
    for (path, bytes) in files {
        if path.contains("..") {
            bail!("{what}: path {path} leaves the volume");
        }
        let target = dir.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        write_if_changed(&target, bytes)?;
    }
    Ok(())
}

/// Writes `bytes` to `target` unless it holds them already, through a
/// file beside it renamed over it: a process reading the volume sees the
/// old content or the new, never half (as the kubelet's atomic writer).
fn write_if_changed(target: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(target).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let name = target
        .file_name()
        .with_context(|| format!("{} names no file", target.display()))?;
    let staged = target.with_file_name(format!("..{}.new", name.to_string_lossy()));
    std::fs::write(&staged, bytes).with_context(|| format!("writing {}", staged.display()))?;
    std::fs::rename(&staged, target).with_context(|| format!("writing {}", target.display()))
}

/// Writes the ConfigMap and Secret volumes of a running pod again from
/// `objects` (read anew), as the kubelet refreshes them: a renewed
/// certificate reaches the pod without a restart. Files mounted by
/// `subPath` keep their content, as on a kubelet; keys removed from the
/// object stay (a kubelet would remove them).
pub fn refresh(pod: &Pod, objects: &Objects, pod_dir: &Path) -> Result<()> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    for v in volumes {
        let dir = pod_dir.join("volumes").join(&v.name);
        let mut sources = Vec::new();
        if let Some(cm) = &v.config_map {
            sources.push((true, cm.name.clone(), cm.items.as_ref(), cm.optional));
        }
        if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            sources.push((false, name, s.items.as_ref(), s.optional));
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &src.config_map {
                sources.push((true, cm.name.clone(), cm.items.as_ref(), cm.optional));
            }
            if let Some(s) = &src.secret {
                sources.push((false, s.name.clone(), s.items.as_ref(), s.optional));
            }
        }
        for (config_map, name, items, optional) in sources {
            let (data, what) = if config_map {
                (objects.config_maps.get(&name), format!("ConfigMap {name}"))
            } else {
                (objects.secrets.get(&name), format!("Secret {name}"))
            };
            // An object deleted while the pod runs leaves its files.
            if data.is_some() {
                write_keys(&dir, data, items, &what, optional == Some(true))?;
            }
        }
    }
    Ok(())
}

/// Downward-API files: each item's field, by its path.
fn write_fields(
    dir: &Path,
    items: &[DownwardAPIVolumeFile],
    pod: &Pod,
    assigned: &Assigned<'_>,
) -> Result<()> {
    for item in items {
        let f = item
            .field_ref
            .as_ref()
            .context("downwardAPI items need a fieldRef here")?;
        std::fs::write(dir.join(&item.path), field(pod, assigned, &f.field_path)?)?;
    }
    Ok(())
}

async fn claim_path(client: &Client, ns: &str, claim: &str) -> Result<PathBuf> {
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .get(claim)
        .await
        .with_context(|| format!("reading claim {claim}"))?;
    let Some(volume) = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()) else {
        bail!("claim {claim} is not bound to a volume yet");
    };
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(&volume)
        .await
        .with_context(|| format!("reading volume {volume}"))?;
    let spec = pv.spec.unwrap_or_default();
    let path = spec
        .local
        .map(|l| l.path)
        .or(spec.host_path.map(|h| h.path))
        .with_context(|| format!("volume {volume} is neither local nor hostPath"))?;
    let path = PathBuf::from(path);
    if !path.is_dir() {
        bail!(
            "the directory {} of volume {volume} is gone (its node's disk lost?)",
            path.display()
        );
    }
    Ok(path)
}

async fn token(
    client: &Client,
    pod: &Pod,
    audience: Option<&str>,
    expiry: Option<i64>,
) -> Result<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
            expiration_seconds: expiry,
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..TokenRequest::default()
    };
    let answer = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(&sa, &PostParams::default(), &request)
        .await
        .with_context(|| format!("requesting a token for service account {ns}/{sa}"))?;
    answer
        .status
        .map(|s| s.token)
        .context("the token request returned no token")
}

/// Every volume of the pod, by name, as a directory (or, for a hostPath,
/// the path itself).
pub async fn materialize(
    client: &Client,
    pod: &Pod,
    objects: &Objects,
    assigned: &Assigned<'_>,
    pod_dir: &Path,
) -> Result<BTreeMap<String, PathBuf>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = BTreeMap::new();
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for v in volumes {
        let dir = pod_dir.join("volumes").join(&v.name);
        let path = if let Some(cm) = &v.config_map {
            write_keys(
                &dir,
                objects.config_maps.get(&cm.name),
                cm.items.as_ref(),
                &format!("ConfigMap {}", cm.name),
                cm.optional == Some(true),
            )?;
            dir
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            write_keys(
                &dir,
                objects.secrets.get(&name),
                s.items.as_ref(),
                &format!("Secret {name}"),
                s.optional == Some(true),
            )?;
            dir
        } else if v.empty_dir.is_some() {
            std::fs::create_dir_all(&dir)?;
            dir
        } else if let Some(c) = &v.persistent_volume_claim {
            claim_path(client, ns, &c.claim_name).await?
        } else if let Some(h) = &v.host_path {
            PathBuf::from(&h.path)
        } else if let Some(p) = &v.projected {
            std::fs::create_dir_all(&dir)?;
            for src in p.sources.iter().flatten() {
                if let Some(t) = &src.service_account_token {
                    let tok =
                        token(client, pod, t.audience.as_deref(), t.expiration_seconds).await?;
                    std::fs::write(dir.join(&t.path), tok)?;
                } else if let Some(cm) = &src.config_map {
                    write_keys(
                        &dir,
                        objects.config_maps.get(&cm.name),
                        cm.items.as_ref(),
                        &format!("ConfigMap {}", cm.name),
                        cm.optional == Some(true),
                    )?;
                } else if let Some(s) = &src.secret {
                    write_keys(
                        &dir,
                        objects.secrets.get(&s.name),
                        s.items.as_ref(),
                        &format!("Secret {}", s.name),
                        s.optional == Some(true),
                    )?;
                } else if let Some(d) = &src.downward_api {
                    write_fields(&dir, d.items.as_deref().unwrap_or_default(), pod, assigned)?;
                }
            }
            dir
        } else if let Some(d) = &v.downward_api {
            std::fs::create_dir_all(&dir)?;
            write_fields(&dir, d.items.as_deref().unwrap_or_default(), pod, assigned)?;
            dir
        } else {
            bail!(
                "volume {}: this kind of volume is not supported by process-kubelet",
                v.name
            );
        };
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {
                "containers": [{"name": "c"}],
                "volumes": [
                    {"name": "certs", "secret": {"secretName": "tls"}},
                    {"name": "conf", "projected": {"sources": [
                        {"configMap": {"name": "settings"}},
                        {"secret": {"name": "gone", "optional": true}}
                    ]}}
                ]
            }
        }))
        .expect("pod")
    }

    fn objects(cert: &str) -> Objects {
        let mut o = Objects::default();
        o.secrets.insert(
            "tls".into(),
            BTreeMap::from([("a.pem".to_string(), cert.as_bytes().to_vec())]),
        );
        o.config_maps.insert(
            "settings".into(),
            BTreeMap::from([("x".to_string(), b"1".to_vec())]),
        );
        o
    }

    #[test]
    fn refresh_writes_changed_secrets_and_config_maps_in_place_and_keeps_the_rest() {
        let dir = tempfile::tempdir().expect("dir");
        let p = pod();
        refresh(&p, &objects("old"), dir.path()).expect("first");
        let cert = dir.path().join("volumes/certs/a.pem");
        assert_eq!(std::fs::read_to_string(&cert).expect("read"), "old");
        let inode = |path: &Path| {
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).expect("meta"))
        };
        let conf = dir.path().join("volumes/conf/x");
        let conf_inode = inode(&conf);
        refresh(&p, &objects("new"), dir.path()).expect("again");
        assert_eq!(std::fs::read_to_string(&cert).expect("read"), "new");
        assert_eq!(inode(&conf), conf_inode, "an unchanged file is not written");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("volumes/certs"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            leftovers,
            vec![std::ffi::OsString::from("a.pem")],
            "no staged file left"
        );
        // A Secret deleted under the running pod leaves its files.
        let mut without = objects("new");
        without.secrets.clear();
        refresh(&p, &without, dir.path()).expect("without");
        assert_eq!(std::fs::read_to_string(&cert).expect("read"), "new");
    }
}
