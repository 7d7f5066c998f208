//! `crds/` and the chart's `charts/sluice-operator/crd-files/` must be exactly
//! what `crdgen` prints: regenerate with
//! `cargo run -p sluice-operator --bin crdgen -- --write crds --write charts/sluice-operator/crd-files`.

use std::path::Path;

#[test]
fn committed_crds_match_crdgen() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rendered = sluice_operator::crdgen::render().expect("render");
    assert_eq!(rendered.len(), 3, "KafkaCluster, Topic, KafkaUser");
    for dir in ["crds", "charts/sluice-operator/crd-files"] {
        for (name, yaml) in &rendered {
            let committed = std::fs::read_to_string(root.join(dir).join(name))
                .unwrap_or_else(|e| panic!("{dir}/{name} missing ({e}): run crdgen"));
            assert!(
                &committed == yaml,
                "{dir}/{name} differs from crdgen's output: run `cargo run -p sluice-operator --bin crdgen -- --write crds --write charts/sluice-operator/crd-files`"
            );
        }
    }
}

#[test]
fn crds_have_scale_short_names_and_validation() {
    let all: String = sluice_operator::crdgen::render()
        .expect("render")
        .into_iter()
        .map(|(_, y)| y)
        .collect();
    for needle in [
        "name: kafkaclusters.sluice.dev",
        "name: topics.sluice.dev",
        "- kc",
        "- kt",
        "name: kafkausers.sluice.dev",
        "- ku",
        "specReplicasPath: .spec.replicas",
        "statusReplicasPath: .status.readyReplicas",
        "x-kubernetes-validations",
        "a cluster needs at least one broker",
        "topicName cannot be changed",
    ] {
        assert!(all.contains(needle), "missing {needle:?}");
    }
}
