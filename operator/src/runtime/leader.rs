//! Leader election on a coordination.k8s.io/v1 Lease, so two operator
//! replicas never both act. A small elector (no crate for it resolves with
//! kube 5 here): [`decide`] is the pure decision, [`acquire`] blocks until
//! this replica holds the Lease, [`hold`] renews it and returns an error
//! when it is lost (the process then exits and restarts as a standby).

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use std::time::Duration;

/// A holder that stops renewing loses the Lease after this long.
pub const LEASE_DURATION_SECONDS: i32 = 15;
/// The holder renews this often (well inside the duration).
pub const RENEW_INTERVAL: Duration = Duration::from_secs(5);
/// A standby re-checks the Lease this often.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// What to do with the Lease as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or the holder expired: take it over.
    Acquire,
    /// Someone else holds a live Lease.
    Wait,
}

/// Pure decision from the Lease spec, our identity and the time.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => Decision::Acquire,
        Some(holder) if holder == me => Decision::Renew,
        Some(_) => {
            let duration = i64::from(
                spec.lease_duration_seconds
                    .unwrap_or(LEASE_DURATION_SECONDS),
            );
            let last = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0);
            match last {
                Some(last) if last + SignedDuration::from_secs(duration) > now => Decision::Wait,
                _ => Decision::Acquire,
            }
        }
    }
}

/// The Lease spec after we acquire or renew it.
pub fn next_spec(current: Option<&LeaseSpec>, me: &str, now: Timestamp) -> LeaseSpec {
    let ours = current.and_then(|s| s.holder_identity.as_deref()) == Some(me);
    let transitions = current.and_then(|s| s.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
        acquire_time: if ours {
            current.and_then(|s| s.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if ours || current.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..Default::default()
    }
}

/// One attempt: `Ok(true)` when we hold the Lease afterwards.
pub async fn try_acquire_or_renew(
    api: &Api<Lease>,
    name: &str,
    me: &str,
) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    match api.get_opt(name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    ..Default::default()
                },
                spec: Some(next_spec(None, me, now)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => match decide(lease.spec.as_ref(), me, now) {
            Decision::Wait => Ok(false),
            Decision::Renew | Decision::Acquire => {
                lease.spec = Some(next_spec(lease.spec.as_ref(), me, now));
                // replace carries metadata.resourceVersion: a concurrent writer gets 409.
                match api.replace(name, &PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        },
    }
}

/// Block until this replica holds the Lease.
pub async fn acquire(api: &Api<Lease>, name: &str, me: &str) {
    loop {
        match try_acquire_or_renew(api, name, me).await {
            Ok(true) => {
                tracing::info!(lease = name, holder = me, "acquired leadership");
                return;
            }
            Ok(false) => tracing::debug!(lease = name, "another replica leads; waiting"),
            Err(e) => tracing::warn!(lease = name, error = %e, "leader election attempt failed"),
        }
        tokio::time::sleep(RETRY_INTERVAL).await;
    }
}

/// Renew until the Lease is lost (or cannot be renewed within its duration).
pub async fn hold(api: &Api<Lease>, name: &str, me: &str) -> anyhow::Result<()> {
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(RENEW_INTERVAL).await;
        match try_acquire_or_renew(api, name, me).await {
            Ok(true) => last_renewed = tokio::time::Instant::now(),
            Ok(false) => anyhow::bail!("lost the leader-election Lease {name} to another replica"),
            Err(e) => tracing::warn!(lease = name, error = %e, "renewing the Lease failed"),
        }
        let expiry = Duration::from_secs(LEASE_DURATION_SECONDS.unsigned_abs().into());
        if last_renewed.elapsed() >= expiry {
            anyhow::bail!("could not renew the leader-election Lease {name} within {expiry:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("valid")
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(at(renewed))),
            lease_transitions: Some(3),
            ..Default::default()
        }
    }

    #[test]
    fn decisions() {
        let cases: &[(&str, Option<LeaseSpec>, i64, Decision)] = &[
            ("no spec", None, 100, Decision::Acquire),
            (
                "no holder",
                Some(LeaseSpec::default()),
                100,
                Decision::Acquire,
            ),
            ("ours", Some(held_by("me", 90)), 100, Decision::Renew),
            (
                "ours even if stale",
                Some(held_by("me", 0)),
                100,
                Decision::Renew,
            ),
            (
                "other, live",
                Some(held_by("other", 90)),
                100,
                Decision::Wait,
            ),
            (
                "other, just expired",
                Some(held_by("other", 85)),
                100,
                Decision::Acquire,
            ),
            (
                "other, never renewed",
                Some(LeaseSpec {
                    holder_identity: Some("other".into()),
                    ..Default::default()
                }),
                100,
                Decision::Acquire,
            ),
        ];
        for (case, spec, now, want) in cases {
            assert_eq!(
                decide(spec.as_ref(), "me", at(*now)),
                *want,
                "case {case:?}"
            );
        }
    }

    #[test]
    fn next_spec_counts_transitions_only_on_takeover() {
        let renewed = next_spec(Some(&held_by("me", 90)), "me", at(100));
        assert_eq!(renewed.lease_transitions, Some(3));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(100))));
        let taken = next_spec(Some(&held_by("other", 0)), "me", at(100));
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.holder_identity.as_deref(), Some("me"));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(100))));
    }
}

#[cfg(test)]
mod api_tests {
    //! The elector against a mock API server: each request as a real one sees it.
    use super::*;
    use crate::fixtures::{ApiServerVerifier, Scenario, call, mock_client, not_found};
    use http::Method;
    use serde_json::json;

    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";

    fn lease(holder: &str, renewed: Timestamp) -> serde_json::Value {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "op", "namespace": "ops", "resourceVersion": "41"},
               "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                        "renewTime": MicroTime(renewed), "leaseTransitions": 1}})
    }

    async fn attempt(scenario: Scenario) -> Result<bool, kube::Error> {
        let (client, handle) = mock_client();
        let verifier = tokio::spawn(ApiServerVerifier(handle).run(scenario));
        let api: Api<Lease> = Api::namespaced(client, "ops");
        let result = tokio::time::timeout(
            crate::fixtures::SCENARIO_TIMEOUT,
            try_acquire_or_renew(&api, "op", "me"),
        )
        .await
        .expect("attempt finished");
        verifier.await.expect("verifier finished");
        result
    }

    #[tokio::test]
    async fn creates_a_missing_lease() {
        let won = attempt(Scenario(vec![
            call(Method::GET, &format!("{LEASES}/op")).reply(404, not_found("op")),
            call(Method::POST, LEASES)
                .query("")
                .check(|body| {
                    assert_eq!(body["metadata"]["name"], "op");
                    assert_eq!(body["spec"]["holderIdentity"], "me");
                    assert_eq!(body["spec"]["leaseDurationSeconds"], LEASE_DURATION_SECONDS);
                })
                .echo(201),
        ]))
        .await;
        assert!(won.expect("no error"));
    }

    #[tokio::test]
    async fn waits_while_another_holder_is_live() {
        let won = attempt(Scenario(vec![
            call(Method::GET, &format!("{LEASES}/op")).reply(200, lease("other", Timestamp::now())),
        ]))
        .await;
        assert!(
            !won.expect("no error"),
            "no write while another replica leads"
        );
    }

    #[tokio::test]
    async fn takes_over_an_expired_lease_with_optimistic_concurrency() {
        let expired = Timestamp::now() - SignedDuration::from_secs(60);
        let won = attempt(Scenario(vec![
            call(Method::GET, &format!("{LEASES}/op")).reply(200, lease("other", expired)),
            call(Method::PUT, &format!("{LEASES}/op"))
                .query("")
                .check(|body| {
                    assert_eq!(
                        body["metadata"]["resourceVersion"], "41",
                        "replace is conditional"
                    );
                    assert_eq!(body["spec"]["holderIdentity"], "me");
                    assert_eq!(body["spec"]["leaseTransitions"], 2);
                })
                .echo(200),
        ]))
        .await;
        assert!(won.expect("no error"));
    }

    #[tokio::test]
    async fn losing_the_race_is_not_an_error() {
        let expired = Timestamp::now() - SignedDuration::from_secs(60);
        let won = attempt(Scenario(vec![
            call(Method::GET, &format!("{LEASES}/op")).reply(200, lease("other", expired)),
            call(Method::PUT, &format!("{LEASES}/op")).query("").reply(
                409,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409,
                       "message": "the object has been modified"}),
            ),
        ]))
        .await;
        assert!(!won.expect("a conflict means someone else won"));
    }

    #[test]
    fn leader_election_permissions_are_in_the_rbac_table() {
        for verb in ["get", "create", "update"] {
            assert!(
                crate::controller::rbac::allows("coordination.k8s.io", "leases", verb),
                "{verb}"
            );
        }
    }
}
