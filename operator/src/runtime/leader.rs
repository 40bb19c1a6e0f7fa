//! Leader election on a coordination.k8s.io/v1 Lease, so two operator
//! replicas never both act. A small elector (no crate for it resolves with
//! kube 5 here) with client-go's rules: a standby judges a Lease expired by its
//! own monotonic clock, from when it last saw the Lease change (never by comparing
//! the holder's `renewTime` with its own wall clock: under clock skew two replicas
//! would lead), and a holder that could not renew within [`RENEW_DEADLINE`], shorter
//! than the lease duration, stops before any standby may take over.
//! [`decide`] is the pure decision, [`Elector::acquire`] blocks until this replica
//! holds the Lease, [`Elector::hold`] renews it and returns an error when it is lost
//! (the process then exits and restarts as a standby).

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use std::time::Duration;
use tokio::time::Instant;

/// A standby takes over a Lease it has not seen change for this long.
pub const LEASE_DURATION_SECONDS: i32 = 15;
/// The holder stops acting when it could not renew for this long (client-go's
/// RenewDeadline): shorter than the lease duration, so it has stopped before a
/// standby that saw its last renewal can take over.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// The holder renews, and a standby re-reads the Lease, this often.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// What to do with the Lease as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or the holder has not renewed it for a lease duration: take it.
    Acquire,
    /// Someone else holds a live Lease.
    Wait,
}

/// The Lease as this replica last saw it, and when, by its own monotonic clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// `metadata.resourceVersion` and the spec: any write by the holder changes them
    /// (a holder whose wall clock stands still still changes the version).
    version: Option<String>,
    spec: Option<LeaseSpec>,
    at: Instant,
}

/// Pure decision from the Lease, our identity, what we saw of it before and our clock:
/// another holder's Lease is expired only when it has not changed for its duration
/// since we first saw it as it is (its `renewTime` is the holder's clock, not ours).
pub fn decide(
    lease: Option<&Lease>,
    me: &str,
    seen: &mut Option<Observation>,
    now: Instant,
) -> Decision {
    let Some(lease) = lease else {
        return Decision::Acquire;
    };
    let Some(spec) = &lease.spec else {
        return Decision::Acquire;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => Decision::Acquire,
        Some(holder) if holder == me => Decision::Renew,
        Some(_) => {
            let version = lease.metadata.resource_version.clone();
            let changed = seen
                .as_ref()
                .is_none_or(|o| o.version != version || o.spec.as_ref() != Some(spec));
            if changed {
                *seen = Some(Observation {
                    version,
                    spec: Some(spec.clone()),
                    at: now,
                });
            }
            let seconds = spec
                .lease_duration_seconds
                .unwrap_or(LEASE_DURATION_SECONDS)
                .max(1);
            let duration = Duration::from_secs(seconds.unsigned_abs().into());
            match seen {
                Some(o) if now.duration_since(o.at) >= duration => Decision::Acquire,
                _ => Decision::Wait,
            }
        }
    }
}

/// Whether a holder whose last successful renewal started at `renewed` must stop acting.
pub fn renew_deadline_passed(renewed: Instant, now: Instant) -> bool {
    now.duration_since(renewed) >= RENEW_DEADLINE
}

/// The Lease spec after we acquire or renew it (`now`: our wall clock, for people
/// reading the Lease; no replica decides by it).
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

/// One replica's side of the election: the Lease it competes for and what it saw of it.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    me: String,
    seen: Option<Observation>,
    /// When the last successful attempt started: the write it made is no older, so a
    /// standby's clock for that write started no earlier.
    renewed: Option<Instant>,
}

impl Elector {
    pub fn new(api: Api<Lease>, name: &str, me: &str) -> Self {
        Self {
            api,
            name: name.to_string(),
            me: me.to_string(),
            seen: None,
            renewed: None,
        }
    }

    /// One attempt: `Ok(true)` when we hold the Lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let started = Instant::now();
        let held = self.attempt().await?;
        if held {
            self.renewed = Some(started);
        }
        Ok(held)
    }

    async fn attempt(&mut self) -> Result<bool, kube::Error> {
        let (api, name, me) = (&self.api, self.name.as_str(), self.me.as_str());
        match api.get_opt(name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        ..Default::default()
                    },
                    spec: Some(next_spec(None, me, Timestamp::now())),
                };
                match api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => match decide(Some(&lease), me, &mut self.seen, Instant::now()) {
                Decision::Wait => Ok(false),
                Decision::Renew | Decision::Acquire => {
                    lease.spec = Some(next_spec(lease.spec.as_ref(), me, Timestamp::now()));
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
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, holder = %self.me, "acquired leadership");
                    return;
                }
                Ok(false) => tracing::debug!(lease = %self.name, "another replica leads; waiting"),
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "leader election attempt failed");
                }
            }
            tokio::time::sleep(RETRY_INTERVAL).await;
        }
    }

    /// On a graceful stop (the controllers have stopped acting): give the Lease up, so
    /// a standby takes it at its next read instead of a lease duration later (client-go's
    /// ReleaseOnCancel). Only while we still hold it; a failure only costs that wait.
    pub async fn release(&mut self) {
        let result = async {
            let Some(mut lease) = self.api.get_opt(&self.name).await? else {
                return Ok(false);
            };
            let Some(spec) = lease.spec.as_mut() else {
                return Ok(false);
            };
            if spec.holder_identity.as_deref() != Some(self.me.as_str()) {
                return Ok(false);
            }
            spec.holder_identity = None;
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
                .map(|_| true)
        }
        .await;
        match result {
            Ok(true) => tracing::info!(lease = %self.name, "released leadership"),
            Ok(false) => {}
            Err(e) => tracing::warn!(lease = %self.name, error = %e, "releasing the Lease failed"),
        }
    }

    /// Renew until the Lease is lost, or not renewed within [`RENEW_DEADLINE`] (an
    /// attempt still hanging then is abandoned): the caller stops acting at once.
    pub async fn hold(&mut self) -> anyhow::Result<()> {
        // The acquiring attempt started the clock (now, if this replica never acquired).
        let mut renewed = *self.renewed.get_or_insert_with(Instant::now);
        loop {
            tokio::time::sleep(RETRY_INTERVAL).await;
            match tokio::time::timeout_at(renewed + RENEW_DEADLINE, self.try_acquire_or_renew())
                .await
            {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => anyhow::bail!(
                    "lost the leader-election Lease {} to another replica",
                    self.name
                ),
                Ok(Err(e)) => {
                    tracing::warn!(lease = %self.name, error = %e, "renewing the Lease failed");
                }
                Err(_) => {}
            }
            renewed = self.renewed.unwrap_or(renewed);
            if renew_deadline_passed(renewed, Instant::now()) {
                anyhow::bail!(
                    "could not renew the leader-election Lease {} within {RENEW_DEADLINE:?}",
                    self.name
                );
            }
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

    fn lease(spec: Option<LeaseSpec>, version: u64) -> Lease {
        Lease {
            metadata: ObjectMeta {
                resource_version: Some(version.to_string()),
                ..Default::default()
            },
            spec,
        }
    }

    #[test]
    fn decisions_without_another_holder() {
        let now = Instant::now();
        let cases: &[(&str, Option<Lease>, Decision)] = &[
            ("no lease", None, Decision::Acquire),
            ("no spec", Some(lease(None, 1)), Decision::Acquire),
            (
                "no holder",
                Some(lease(Some(LeaseSpec::default()), 1)),
                Decision::Acquire,
            ),
            (
                "ours",
                Some(lease(Some(held_by("me", 90)), 1)),
                Decision::Renew,
            ),
            (
                "ours even if stale",
                Some(lease(Some(held_by("me", 0)), 1)),
                Decision::Renew,
            ),
        ];
        for (case, lease, want) in cases {
            assert_eq!(
                decide(lease.as_ref(), "me", &mut None, now),
                *want,
                "case {case:?}"
            );
        }
    }

    /// Another holder's Lease expires a lease duration after this replica last saw it
    /// change, whatever its renewTime says (an hour in the past here: judged by the
    /// time written, it would have been taken over at once).
    #[test]
    fn another_holders_lease_expires_by_our_clock_from_its_last_change() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let mut seen = None;
        let old_clock = lease(Some(held_by("other", -3600)), 7);
        assert_eq!(
            decide(Some(&old_clock), "me", &mut seen, s(0)),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&old_clock), "me", &mut seen, s(14)),
            Decision::Wait
        );
        // Renewed (a new version; its clock still an hour behind): the wait starts again.
        let renewed = lease(Some(held_by("other", -3599)), 8);
        assert_eq!(
            decide(Some(&renewed), "me", &mut seen, s(14)),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&renewed), "me", &mut seen, s(28)),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&renewed), "me", &mut seen, s(29)),
            Decision::Acquire
        );
        // A fresh standby knows nothing of the past: it waits a whole duration.
        let mut fresh = None;
        assert_eq!(
            decide(Some(&renewed), "me", &mut fresh, s(29)),
            Decision::Wait
        );
    }

    /// Two replicas, the holder's wall clock skewed by up to an hour either way (or
    /// standing still): the holder renews every RETRY_INTERVAL until it is cut off from
    /// the API server, then stops acting at its renew deadline; the standby reads the
    /// Lease every RETRY_INTERVAL (at an offset) and takes it over. It never does before
    /// the holder stopped: never two leaders.
    #[test]
    fn under_a_skewed_clock_two_leaders_never_act_at_once() {
        let t0 = Instant::now();
        let ms = |ms: u64| t0 + Duration::from_millis(ms);
        let step = u64::try_from(RETRY_INTERVAL.as_millis()).expect("small");
        for skew in [-3600, -16, -1, 0, 1, 16, 3600, i64::MIN] {
            for cut_off_at in [0, 5_000, 20_000, 21_000] {
                for standby_offset in [0, 1, 999, 1_999] {
                    // The holder: its writes, and when it stops acting.
                    let mut writes: Vec<(u64, Lease)> = Vec::new();
                    let mut last_renewal_started = 0;
                    let mut t = 0;
                    while t <= cut_off_at {
                        let wall = if skew == i64::MIN {
                            0 // a clock standing still
                        } else {
                            i64::try_from(t / 1000).expect("small") + skew
                        };
                        let version = u64::try_from(writes.len()).expect("small") + 1;
                        // The write lands a little after the attempt started.
                        writes.push((t + 50, lease(Some(held_by("holder", wall)), version)));
                        last_renewal_started = t;
                        t += step;
                    }
                    let holder_stops = (1..)
                        .map(|k| last_renewal_started + k * step)
                        .find(|&t| renew_deadline_passed(ms(last_renewal_started), ms(t)))
                        .expect("a deadline");
                    // The standby.
                    let mut seen = None;
                    let mut t = standby_offset;
                    let acquired = loop {
                        let visible = writes.iter().rev().find(|(w, _)| *w <= t).map(|(_, l)| l);
                        if let Some(visible) = visible
                            && decide(Some(visible), "standby", &mut seen, ms(t))
                                == Decision::Acquire
                        {
                            break t;
                        }
                        t += step;
                        assert!(t < 600_000, "the standby never took over");
                    };
                    assert!(
                        acquired > holder_stops,
                        "skew {skew}, cut off at {cut_off_at} ms, standby offset {standby_offset}: \
                         the standby took over at {acquired} ms, the holder acted until {holder_stops} ms"
                    );
                }
            }
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

    /// One attempt of an elector that saw the Lease as `lease` returns it, `seen_ago`
    /// (`None`: never saw it).
    async fn attempt_after(
        scenario: Scenario,
        seen: Option<(serde_json::Value, Duration)>,
    ) -> Result<bool, kube::Error> {
        let (client, handle) = mock_client();
        let verifier = tokio::spawn(ApiServerVerifier(handle).run(scenario));
        let api: Api<Lease> = Api::namespaced(client, "ops");
        let mut elector = Elector::new(api, "op", "me");
        if let Some((lease, ago)) = seen {
            let lease: Lease = serde_json::from_value(lease).expect("a Lease");
            elector.seen = Some(Observation {
                version: lease.metadata.resource_version,
                spec: lease.spec,
                at: Instant::now() - ago,
            });
        }
        let result = tokio::time::timeout(
            crate::fixtures::SCENARIO_TIMEOUT,
            elector.try_acquire_or_renew(),
        )
        .await
        .expect("attempt finished");
        verifier.await.expect("verifier finished");
        result
    }

    async fn attempt(scenario: Scenario) -> Result<bool, kube::Error> {
        attempt_after(scenario, None).await
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
    async fn a_lease_renewed_an_hour_ago_by_its_clock_is_not_taken_at_first_sight() {
        let long_ago = Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(3600);
        let won = attempt(Scenario(vec![
            call(Method::GET, &format!("{LEASES}/op")).reply(200, lease("other", long_ago)),
        ]))
        .await;
        assert!(
            !won.expect("no error"),
            "its renewTime is the holder's clock, not ours"
        );
    }

    #[tokio::test]
    async fn takes_over_an_expired_lease_with_optimistic_concurrency() {
        let renewed = Timestamp::now();
        let unchanged_for = Duration::from_secs(16);
        let won = attempt_after(
            Scenario(vec![
                call(Method::GET, &format!("{LEASES}/op")).reply(200, lease("other", renewed)),
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
            ]),
            Some((lease("other", renewed), unchanged_for)),
        )
        .await;
        assert!(won.expect("no error"));
    }

    #[tokio::test]
    async fn losing_the_race_is_not_an_error() {
        let renewed = Timestamp::now();
        let won = attempt_after(Scenario(vec![
            call(Method::GET, &format!("{LEASES}/op")).reply(200, lease("other", renewed)),
            call(Method::PUT, &format!("{LEASES}/op")).query("").reply(
                409,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409,
                       "message": "the object has been modified"}),
            ),
        ]), Some((lease("other", renewed), Duration::from_secs(16))))
        .await;
        assert!(!won.expect("a conflict means someone else won"));
    }

    async fn release(scenario: Scenario) {
        let (client, handle) = mock_client();
        let verifier = tokio::spawn(ApiServerVerifier(handle).run(scenario));
        let mut elector = Elector::new(Api::namespaced(client, "ops"), "op", "me");
        tokio::time::timeout(crate::fixtures::SCENARIO_TIMEOUT, elector.release())
            .await
            .expect("release finished");
        verifier.await.expect("verifier finished");
    }

    #[tokio::test]
    async fn a_graceful_stop_gives_our_lease_up_and_leaves_anothers_alone() {
        release(Scenario(vec![
            call(Method::GET, &format!("{LEASES}/op")).reply(200, lease("me", Timestamp::now())),
            call(Method::PUT, &format!("{LEASES}/op"))
                .query("")
                .check(|body| {
                    assert_eq!(body["metadata"]["resourceVersion"], "41");
                    assert!(body["spec"].get("holderIdentity").is_none(), "{body}");
                })
                .echo(200),
        ]))
        .await;
        // Someone else's: no write (the verifier fails on an unexpected request).
        release(Scenario(vec![
            call(Method::GET, &format!("{LEASES}/op")).reply(200, lease("other", Timestamp::now())),
        ]))
        .await;
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
