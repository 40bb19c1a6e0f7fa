//! Part of step 3 (apply): whether the exposure object will route clients, read back from
//! what the API server returned for it. An Ingress routes once a controller of its class
//! wrote an address into its status; an HTTPRoute once the API server took its
//! `sessionPersistence` (standard-channel Gateway API CRDs do not have it: server-side
//! apply refuses the route, other writes prune the field; either way the route would not
//! be sticky, and long-polling clients would get "Session ID unknown") and the Gateway's
//! controller accepted it with its references resolved. Until then ExposureReady is False
//! and says which of these is missing.

use super::status::ExposureState;
use crate::resources::GatewayParentRef;
use serde_json::Value;

/// What an applied Ingress of `class` says about its controller.
pub fn ingress(summary: String, class: &str, applied: &Value) -> ExposureState {
    let addresses: Vec<&str> = applied["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["ip"].as_str().or_else(|| a["hostname"].as_str()))
        .collect();
    if addresses.is_empty() {
        ExposureState::AwaitingController(format!(
            "{summary}: no controller of class {class} has admitted it yet (its status.loadBalancer has no address)"
        ))
    } else {
        ExposureState::Configured(format!(
            "{summary}, admitted by its controller at {}",
            addresses.join(", ")
        ))
    }
}

/// Whether the API server refused an HTTPRoute apply because its CRD has no
/// `sessionPersistence` (server-side apply answers 500 "failed to create typed patch
/// object (…): .spec.rules[0].sessionPersistence: field not declared in schema").
pub fn refuses_session_persistence(message: &str) -> bool {
    message.contains(".sessionPersistence: field not declared in schema")
}

/// What an applied HTTPRoute in `namespace` says about session persistence and its parent.
pub fn route(
    summary: String,
    parent: &GatewayParentRef,
    namespace: &str,
    applied: &Value,
) -> ExposureState {
    let rules = applied["spec"]["rules"].as_array();
    let sticky = rules.is_some_and(|rules| {
        !rules.is_empty() && rules.iter().all(|r| r.get("sessionPersistence").is_some())
    });
    if !sticky {
        return ExposureState::SessionPersistenceDropped;
    }
    let gateway_ns = parent.namespace.as_deref().unwrap_or(namespace);
    let gateway = format!("Gateway {gateway_ns}/{}", parent.name);
    let ours = applied["status"]["parents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            let r = &p["parentRef"];
            r["name"].as_str() == Some(parent.name.as_str())
                && r["namespace"].as_str().unwrap_or(namespace) == gateway_ns
                && r["sectionName"].as_str() == parent.section_name.as_deref()
        });
    let Some(ours) = ours else {
        return ExposureState::RouteNotAccepted(format!(
            "{summary}: no controller of {gateway} has accepted it yet (its status.parents has no entry for that Gateway)"
        ));
    };
    let condition = |type_: &str| {
        ours["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == type_)
    };
    let said = |type_: &str| match condition(type_) {
        Some(c) => format!(
            "{type_}={} ({}: {})",
            c["status"].as_str().unwrap_or("?"),
            c["reason"].as_str().unwrap_or(""),
            c["message"].as_str().unwrap_or("")
        ),
        None => format!("{type_} not reported"),
    };
    let true_ = |type_: &str| condition(type_).is_some_and(|c| c["status"] == "True");
    let controller = ours["controllerName"].as_str().unwrap_or("its controller");
    if true_("Accepted") && true_("ResolvedRefs") {
        ExposureState::Configured(format!("{summary}, accepted by {controller} on {gateway}"))
    } else {
        ExposureState::RouteNotAccepted(format!(
            "{summary}: {gateway} ({controller}) says {}; {}",
            said("Accepted"),
            said("ResolvedRefs")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gw() -> GatewayParentRef {
        GatewayParentRef {
            name: "gw".into(),
            namespace: Some("infra".into()),
            section_name: None,
        }
    }

    fn applied_route(sticky: bool, parents: Value) -> Value {
        let mut rule = json!({"backendRefs": [{"name": "chat", "port": 3000}]});
        if sticky {
            rule["sessionPersistence"] = json!({"sessionName": "c", "type": "Cookie"});
        }
        json!({"spec": {"rules": [rule]}, "status": {"parents": parents}})
    }

    fn parent(ns: &str, accepted: &str, resolved: &str) -> Value {
        json!({"parentRef": {"name": "gw", "namespace": ns}, "controllerName": "example.net/gateway",
               "conditions": [{"type": "Accepted", "status": accepted, "reason": "R", "message": "m"},
                              {"type": "ResolvedRefs", "status": resolved, "reason": "R2", "message": "m2"}]})
    }

    #[test]
    fn an_ingress_routes_once_its_controller_wrote_an_address() {
        let none = ingress(
            "Ingress chat".into(),
            "traefik",
            &json!({"status": {"loadBalancer": {}}}),
        );
        assert!(
            matches!(&none, ExposureState::AwaitingController(m) if m.contains("class traefik")),
            "{none:?}"
        );
        let admitted = ingress(
            "Ingress chat".into(),
            "traefik",
            &json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.9"}, {"hostname": "lb.example"}]}}}),
        );
        assert_eq!(
            admitted,
            ExposureState::Configured(
                "Ingress chat, admitted by its controller at 10.0.0.9, lb.example".into()
            )
        );
    }

    #[test]
    fn the_real_api_servers_refusal_of_session_persistence_is_recognised() {
        // kube-apiserver v1.36.3 with the Gateway API v1.6.3 standard-channel CRDs.
        let refusal = "failed to create typed patch object (apps/chat; gateway.networking.k8s.io/v1, Kind=HTTPRoute): .spec.rules[0].sessionPersistence: field not declared in schema";
        assert!(refuses_session_persistence(refusal));
        assert!(!refuses_session_persistence(
            "failed to create typed patch object (apps/chat; gateway.networking.k8s.io/v1, Kind=HTTPRoute): .spec.rules[0].filters: field not declared in schema"
        ));
    }

    #[test]
    fn a_route_without_session_persistence_is_never_ready() {
        let accepted = json!([parent("infra", "True", "True")]);
        assert_eq!(
            route("r".into(), &gw(), "apps", &applied_route(false, accepted)),
            ExposureState::SessionPersistenceDropped
        );
    }

    #[test]
    fn a_route_is_ready_once_its_gateway_accepted_it_with_refs_resolved() {
        let state = |parents| route("r".into(), &gw(), "apps", &applied_route(true, parents));
        assert!(
            matches!(state(json!(null)), ExposureState::RouteNotAccepted(m) if m.contains("Gateway infra/gw"))
        );
        // Another Gateway of the same name in another namespace is not ours.
        assert!(matches!(
            state(json!([parent("apps", "True", "True")])),
            ExposureState::RouteNotAccepted(_)
        ));
        let refused = state(json!([parent("infra", "True", "False")]));
        assert!(
            matches!(&refused, ExposureState::RouteNotAccepted(m) if m.contains("ResolvedRefs=False (R2: m2)")),
            "{refused:?}"
        );
        assert_eq!(
            state(json!([parent("infra", "True", "True")])),
            ExposureState::Configured(
                "r, accepted by example.net/gateway on Gateway infra/gw".into()
            )
        );
    }
}
