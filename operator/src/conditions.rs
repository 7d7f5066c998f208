//! Status conditions the Kubernetes way: one per type, the transition time
//! kept while the status stays the same.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// What a condition should say now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted<'a> {
    pub type_: &'a str,
    pub status: bool,
    pub reason: &'a str,
    pub message: String,
}

/// Sets `wanted` in `conditions`, keeping `lastTransitionTime` of an
/// existing condition of that type whose status does not change.
pub fn set(
    conditions: &mut Vec<Condition>,
    wanted: Wanted<'_>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if wanted.status { "True" } else { "False" }.to_string();
    let existing = conditions.iter().position(|c| c.type_ == wanted.type_);
    let transition = match existing.map(|i| &conditions[i]) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(now),
    };
    let c = Condition {
        type_: wanted.type_.to_string(),
        status,
        reason: wanted.reason.to_string(),
        message: wanted.message,
        observed_generation: generation,
        last_transition_time: transition,
    };
    match existing {
        Some(i) => conditions[i] = c,
        None => conditions.push(c),
    }
}

/// The status (`True`/`False`) of a condition type, if present.
pub fn status_of<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a str> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(status: bool, reason: &str) -> Wanted<'_> {
        Wanted {
            type_: "Ready",
            status,
            reason,
            message: reason.to_string(),
        }
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let t0 = Timestamp::from_second(1_000).expect("ts");
        let t1 = Timestamp::from_second(2_000).expect("ts");
        let t2 = Timestamp::from_second(3_000).expect("ts");
        let mut cs = Vec::new();
        set(&mut cs, w(false, "Starting"), Some(1), t0);
        set(&mut cs, w(false, "StillStarting"), Some(2), t1);
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].last_transition_time, Time(t0));
        assert_eq!(cs[0].reason, "StillStarting");
        assert_eq!(cs[0].observed_generation, Some(2));
        set(&mut cs, w(true, "Ready"), Some(2), t2);
        assert_eq!(cs[0].last_transition_time, Time(t2));
        assert_eq!(status_of(&cs, "Ready"), Some("True"));
        assert_eq!(status_of(&cs, "Degraded"), None);
    }
}
