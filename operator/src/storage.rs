//! Storage growth: a larger `spec.storage.size` expands every broker's
//! claim in place. A StatefulSet's `volumeClaimTemplates` cannot change, so
//! the claims are patched one by one and the StatefulSet is then deleted
//! with `propagationPolicy: Orphan` and applied again with the new
//! template: its pods keep running and are adopted, none is restarted (the
//! pod template is the same). A smaller size is refused: volumes cannot
//! shrink.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Type of the condition that reports volume expansion.
pub const VOLUMES: &str = "VolumeExpansion";

/// Bytes in a storage quantity (`10Gi`, `500M`, `1.5Ti`, `1e9`).
pub fn bytes(q: &str) -> Option<u128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, unit) = q.split_at(split);
    let mult: u128 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        u if u.starts_with(['e', 'E']) => 10u128.checked_pow(u[1..].parse().ok()?)?,
        _ => return None,
    };
    let value: f64 = num.parse().ok()?;
    Some((value * mult as f64) as u128)
}

/// The size the StatefulSet's claim template asks for.
pub fn template_size(sts: &StatefulSet) -> Option<String> {
    let claim = sts
        .spec
        .as_ref()?
        .volume_claim_templates
        .as_ref()?
        .first()?;
    claim_size(claim)
}

pub fn set_template_size(sts: &mut StatefulSet, size: &str) {
    let requests = sts
        .spec
        .as_mut()
        .and_then(|s| s.volume_claim_templates.as_mut())
        .and_then(|t| t.first_mut())
        .and_then(|c| c.spec.as_mut())
        .and_then(|s| s.resources.as_mut())
        .and_then(|r| r.requests.as_mut());
    if let Some(r) = requests {
        r.insert("storage".into(), Quantity(size.into()));
    }
}

/// The size a claim (or a claim template) asks for.
pub fn claim_size(c: &PersistentVolumeClaim) -> Option<String> {
    c.spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .map(|q| q.0.clone())
}

/// What `spec.storage.size` asks of the running StatefulSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resize {
    /// No StatefulSet yet, or the same size.
    Unchanged,
    Grow {
        from: String,
        to: String,
    },
    Shrink {
        from: String,
        to: String,
    },
}

pub fn resize(current: Option<&StatefulSet>, wanted: &str) -> Resize {
    let Some(from) = current.and_then(template_size) else {
        return Resize::Unchanged;
    };
    match (bytes(&from), bytes(wanted)) {
        (Some(f), Some(t)) if t > f => Resize::Grow {
            from,
            to: wanted.into(),
        },
        (Some(f), Some(t)) if t < f => Resize::Shrink {
            from,
            to: wanted.into(),
        },
        _ => Resize::Unchanged,
    }
}

/// The claims whose volumes do not report `size` yet, by name.
pub fn not_expanded(claims: &[PersistentVolumeClaim], size: &str) -> Vec<String> {
    let Some(want) = bytes(size) else {
        return Vec::new();
    };
    let mut out: Vec<String> = claims
        .iter()
        .filter(|c| {
            let have = c
                .status
                .as_ref()
                .and_then(|s| s.capacity.as_ref())
                .and_then(|cap| cap.get("storage"))
                .and_then(|q| bytes(&q.0));
            have.is_some_and(|h| h < want)
        })
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sts(size: &str) -> StatefulSet {
        serde_json::from_value(json!({"spec": {
            "selector": {}, "serviceName": "x", "template": {},
            "volumeClaimTemplates": [{"spec": {"resources": {"requests": {"storage": size}}}}],
        }}))
        .expect("sts")
    }

    #[test]
    fn grow_and_shrink_are_told_apart() {
        assert_eq!(resize(None, "10Gi"), Resize::Unchanged);
        assert_eq!(resize(Some(&sts("10Gi")), "10Gi"), Resize::Unchanged);
        assert_eq!(resize(Some(&sts("10Gi")), "10240Mi"), Resize::Unchanged);
        assert_eq!(
            resize(Some(&sts("10Gi")), "20Gi"),
            Resize::Grow {
                from: "10Gi".into(),
                to: "20Gi".into()
            }
        );
        assert_eq!(
            resize(Some(&sts("10Gi")), "5G"),
            Resize::Shrink {
                from: "10Gi".into(),
                to: "5G".into()
            }
        );
        let mut s = sts("10Gi");
        set_template_size(&mut s, "20Gi");
        assert_eq!(template_size(&s).as_deref(), Some("20Gi"));
    }

    #[test]
    fn claims_not_yet_expanded() {
        let claim = |name: &str, cap: &str| -> PersistentVolumeClaim {
            serde_json::from_value(json!({"metadata": {"name": name},
                "status": {"capacity": {"storage": cap}}}))
            .expect("claim")
        };
        let claims = [claim("data-demo-1", "10Gi"), claim("data-demo-0", "20Gi")];
        assert_eq!(not_expanded(&claims, "20Gi"), vec!["data-demo-1"]);
        assert!(not_expanded(&claims, "10Gi").is_empty());
        assert_eq!(bytes("1.5Ki"), Some(1536));
        assert_eq!(bytes("7Zi"), None);
    }
}
