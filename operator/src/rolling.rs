//! Rolling restarts of the brokers. The StatefulSet's update strategy is
//! `OnDelete`: a changed pod template (image, config hash) restarts
//! nothing by itself. Each pass, the reconciler finds the broker pods not
//! at the StatefulSet's update revision, asks [`crate::plan::roll`] which
//! one may go (no partition below `min.insync.replicas`, the quorum keeps
//! a majority, one broker at a time, the controller last) and deletes that
//! pod; the broker hands its leaderships away on SIGTERM before it exits.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use sluice_client::ClusterInfo;

use crate::plan::roll::{RollStep, next_roll};
use crate::plan::{Broker, Observed};
use crate::status::pod_ready;

/// The label a StatefulSet puts on each pod: the revision it was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The broker id of a pod: its StatefulSet ordinal.
pub fn ordinal(pod: &Pod) -> Option<i32> {
    pod.metadata
        .name
        .as_deref()?
        .rsplit('-')
        .next()?
        .parse()
        .ok()
}

/// Broker ids whose pods run an older revision than the StatefulSet's.
pub fn outdated(sts: &StatefulSet, pods: &[Pod]) -> Vec<i32> {
    // A StatefulSet whose controller has not caught up with it (just
    // created again around its pods for a volume expansion, or just
    // changed) has no revision to compare with yet.
    let observed = sts.status.as_ref().and_then(|s| s.observed_generation);
    if observed.is_none() || observed < sts.metadata.generation {
        return Vec::new();
    }
    let Some(revision) = sts
        .status
        .as_ref()
        .and_then(|s| s.update_revision.as_deref())
    else {
        return Vec::new();
    };
    let mut out: Vec<i32> = pods
        .iter()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_LABEL))
                .is_some_and(|r| r != revision)
        })
        .filter_map(ordinal)
        .collect();
    out.sort_unstable();
    out
}

/// The next restart. `partitions` carries each partition's ISR and
/// `min.insync.replicas`; a broker counts as live when its pod is ready
/// and the cluster's metadata lists it.
pub fn next(
    brokers: i32,
    pods: &[Pod],
    cluster: &ClusterInfo,
    partitions: Observed,
    pending: &[i32],
    voters: &[i32],
) -> RollStep {
    let listed = |id: i32| cluster.brokers.iter().any(|b| b.id == id);
    let ready = |id: i32| pods.iter().any(|p| ordinal(p) == Some(id) && pod_ready(p));
    let obs = Observed {
        brokers: (0..brokers)
            .map(|id| Broker {
                id,
                rack: None,
                live: listed(id) && ready(id),
            })
            .collect(),
        partitions: partitions.partitions,
    };
    next_roll(&obs, pending, voters, Some(cluster.controller_id))
}
