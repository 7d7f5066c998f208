//! What every reconcile shares: the Kubernetes client, the event recorder,
//! metrics, how to reach a cluster's brokers, and per-object backoff.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};
use sluice_client::AdminClient;

use crate::brokers::Brokers;
use crate::crd::KafkaCluster;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::resources;

/// The name the operator applies and records events under.
pub const FIELD_MANAGER: &str = "sluice-operator";

/// Settings from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `namespace/name` of a KafkaCluster -> `host:port` to reach its
    /// brokers at, instead of the in-cluster bootstrap Service (an operator
    /// run outside the cluster, or tests with brokers on loopback).
    pub bootstrap_overrides: BTreeMap<String, String>,
    /// Time limit of one Kafka admin request.
    pub admin_timeout: Duration,
    /// Requeue of a settled object.
    pub resync: Duration,
    /// Requeue while a cluster or topic is on its way.
    pub poll: Duration,
    /// Backoff after errors: doubles from `min` up to `max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bootstrap_overrides: BTreeMap::new(),
            admin_timeout: Duration::from_secs(10),
            resync: Duration::from_secs(300),
            poll: Duration::from_secs(10),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    failures: Mutex<HashMap<String, u32>>,
    /// A secured cluster's TLS for admin requests, by `namespace/name`,
    /// with the CA certificate it was made from and when (the operator's
    /// certificate in it is renewed as the brokers' are).
    tls: Mutex<HashMap<String, (String, std::time::Instant, sluice_client::TlsConfig)>>,
}

impl Context {
    pub fn new(
        client: Client,
        instance: Option<String>,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            settings,
            failures: Mutex::new(HashMap::new()),
            tls: Mutex::new(HashMap::new()),
        }
    }

    /// How the operator reaches this cluster's brokers: the bootstrap
    /// Service's PLAINTEXT listener, or on a secured cluster its
    /// replication listener over mutual TLS (the operator's own
    /// certificate from the cluster CA).
    pub async fn brokers(&self, kc: &KafkaCluster) -> Result<Brokers> {
        let key = format!("{}/{}", kc.namespace().unwrap_or_default(), kc.name_any());
        let bootstrap = self
            .settings
            .bootstrap_overrides
            .get(&key)
            .cloned()
            .unwrap_or_else(|| resources::admin_bootstrap(kc));
        if !resources::secured(kc) {
            return Ok(Brokers::plaintext(bootstrap));
        }
        let ca = crate::certs::read_ca(&self.client, kc, crate::certs::CaKind::Cluster)
            .await?
            .ok_or(Error::MissingField("cluster CA Secret (not made yet)"))?;
        let cached = {
            let tls = self.tls.lock().unwrap_or_else(|e| e.into_inner());
            let c = &kc.spec.certificates;
            let fresh_for = Duration::from_secs(
                86_400 * u64::try_from(c.validity_days - c.renewal_days).unwrap_or(0),
            );
            tls.get(&key)
                .filter(|(pem, made, _)| *pem == ca.cert_pem && made.elapsed() < fresh_for)
                .map(|(_, _, c)| c.clone())
        };
        let config = match cached {
            Some(c) => c,
            None => {
                let c = ca.operator_tls(kc).map_err(Error::Certificates)?;
                self.tls.lock().unwrap_or_else(|e| e.into_inner()).insert(
                    key,
                    (ca.cert_pem.clone(), std::time::Instant::now(), c.clone()),
                );
                c
            }
        };
        Ok(Brokers {
            bootstrap,
            tls: Some(config),
        })
    }

    /// How to reach this cluster's brokers, and an admin client connected
    /// to one of them.
    pub async fn connect(&self, kc: &KafkaCluster) -> Result<(Brokers, AdminClient)> {
        let brokers = self.brokers(kc).await?;
        let admin = brokers
            .connect_any(self.settings.admin_timeout)
            .await
            .map_err(Error::admin(&brokers.bootstrap, "connect"))?;
        Ok((brokers, admin))
    }

    /// A connected admin client for this cluster.
    pub async fn admin(&self, kc: &KafkaCluster) -> Result<AdminClient> {
        Ok(self.connect(kc).await?.1)
    }

    /// The next requeue delay after an error for this object: doubles per
    /// consecutive failure, capped.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(key.to_string()).or_insert(0);
        let delay = self
            .settings
            .backoff_min
            .saturating_mul(1u32 << (*n).min(16))
            .min(self.settings.backoff_max);
        *n = n.saturating_add(1);
        delay
    }

    /// A successful reconcile resets the object's backoff.
    pub fn succeeded(&self, key: &str) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.remove(key);
    }

    /// Records an event; a failure to record is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not record an event");
        }
    }
}

/// Server-side applies `status` to the object's status subresource with
/// the operator's field manager.
pub async fn write_status<K, S>(ctx: &Context, obj: &K, status: &S) -> crate::error::Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: serde::Serialize,
{
    use kube::api::{Api, Patch, PatchParams};
    let ns = obj
        .meta()
        .namespace
        .clone()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::kube(format!(
        "update status of {} {ns}/{name}",
        K::kind(&())
    )))?;
    Ok(())
}

/// `kind/namespace/name`, the key of the backoff table.
pub fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_resets() {
        let s = Settings {
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
            ..Settings::default()
        };
        // A client is needed only for the recorder; no request is made.
        let cfg = kube::Config::new("http://127.0.0.1:1".parse().expect("uri"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let _g = rt.enter();
        let client = Client::try_from(cfg).expect("client");
        let ctx = Context::new(client, None, Arc::new(Metrics::new()), s);
        let d: Vec<u64> = (0..6).map(|_| ctx.backoff("a").as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(ctx.backoff("b").as_secs(), 1, "per object");
        ctx.succeeded("a");
        assert_eq!(ctx.backoff("a").as_secs(), 1);
    }
}
