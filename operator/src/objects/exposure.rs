//! How clients reach the cluster, with sticky sessions (a socket.io client
//! doing long-polling must keep hitting the pod that holds its session):
//! an HTTPRoute with cookie session persistence, an Ingress with the
//! controller's sticky annotations, or the client Service's ClientIP affinity.

use super::deployment::HTTP_PORT_NAME;
use super::labels::{self, Component};
use crate::resources::{GatewayExposure, IngressAffinity, IngressController, IngressExposure};
use crate::validate::ValidatedCluster;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use push_contract::defaults;
use serde_json::json;
use std::collections::BTreeMap;

pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
pub const GATEWAY_VERSION: &str = "v1";
pub const HTTPROUTE_KIND: &str = "HTTPRoute";
pub const HTTPROUTE_PLURAL: &str = "httproutes";

/// Idle WebSocket connections must outlive the proxy's read/send timeouts (seconds).
pub const PROXY_TIMEOUT_SECONDS: &str = "3600";
/// Lifetime of the ingress-nginx affinity cookie (seconds).
pub const COOKIE_MAX_AGE_SECONDS: &str = "172800";

const NGINX: &str = "nginx.ingress.kubernetes.io/";
const TRAEFIK_STICKY: &str = "traefik.ingress.kubernetes.io/service.sticky.cookie";

pub fn httproute_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GATEWAY_GROUP, GATEWAY_VERSION, HTTPROUTE_KIND),
        HTTPROUTE_PLURAL,
    )
}

/// Where clients connect, as shown in status.endpoint.
pub fn endpoint(vc: &ValidatedCluster) -> String {
    let exposure = &vc.spec.exposure;
    match &exposure.host {
        Some(host) if exposure.service.is_none() => {
            let scheme = if exposure.tls.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{host}")
        }
        _ => format!(
            "http://{}.{}.svc:{}",
            vc.names.server,
            vc.namespace,
            defaults::PORT
        ),
    }
}

/// Annotations the ingress controller reads from the client Service (Traefik's sticky cookie).
pub fn client_service_annotations(vc: &ValidatedCluster) -> BTreeMap<String, String> {
    match &vc.spec.exposure.ingress {
        Some(ingress) if ingress.controller == IngressController::Traefik => BTreeMap::from([
            (TRAEFIK_STICKY.to_string(), "true".to_string()),
            (
                format!("{TRAEFIK_STICKY}.name"),
                ingress.cookie_name.clone(),
            ),
            (format!("{TRAEFIK_STICKY}.httponly"), "true".to_string()),
            (
                format!("{TRAEFIK_STICKY}.secure"),
                vc.spec.exposure.tls.is_some().to_string(),
            ),
        ]),
        _ => BTreeMap::new(),
    }
}

/// The sticky-session and timeout annotations of an Ingress.
pub fn ingress_annotations(ingress: &IngressExposure) -> BTreeMap<String, String> {
    let mut annotations = ingress.annotations.clone();
    if ingress.controller == IngressController::Nginx {
        let ours: Vec<(&str, String)> = match ingress.affinity {
            IngressAffinity::Cookie => vec![
                ("affinity", "cookie".to_string()),
                ("affinity-mode", "persistent".to_string()),
                ("session-cookie-name", ingress.cookie_name.clone()),
                ("session-cookie-path", "/".to_string()),
                ("session-cookie-max-age", COOKIE_MAX_AGE_SECONDS.to_string()),
            ],
            IngressAffinity::IpHash => {
                vec![("upstream-hash-by", "$binary_remote_addr".to_string())]
            }
        };
        for (key, value) in ours {
            annotations.insert(format!("{NGINX}{key}"), value);
        }
        for key in ["proxy-read-timeout", "proxy-send-timeout"] {
            annotations.insert(format!("{NGINX}{key}"), PROXY_TIMEOUT_SECONDS.to_string());
        }
    }
    annotations
}

pub fn ingress(vc: &ValidatedCluster, ingress: &IngressExposure) -> Ingress {
    let host = vc.spec.exposure.host.clone();
    let mut metadata = labels::object_meta(vc, &vc.names.server, Component::Server);
    let annotations = ingress_annotations(ingress);
    if !annotations.is_empty() {
        metadata.annotations = Some(annotations);
    }
    Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: Some(ingress.class_name.clone()),
            rules: Some(vec![IngressRule {
                host: host.clone(),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".to_string()),
                        path_type: "Prefix".to_string(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: vc.names.server.clone(),
                                port: Some(ServiceBackendPort {
                                    name: Some(HTTP_PORT_NAME.to_string()),
                                    number: None,
                                }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            tls: vc.spec.exposure.tls.as_ref().map(|tls| {
                vec![IngressTLS {
                    hosts: host.map(|h| vec![h]),
                    secret_name: Some(tls.secret_name.clone()),
                }]
            }),
            default_backend: None,
        }),
        status: None,
    }
}

/// The HTTPRoute (Gateway API v1) with cookie session persistence on the given parent.
pub fn httproute(vc: &ValidatedCluster, gateway: &GatewayExposure) -> DynamicObject {
    let mut parent =
        json!({"group": GATEWAY_GROUP, "kind": "Gateway", "name": gateway.parent_ref.name});
    if let Some(ns) = &gateway.parent_ref.namespace {
        parent["namespace"] = json!(ns);
    }
    if let Some(section) = &gateway.parent_ref.section_name {
        parent["sectionName"] = json!(section);
    }
    let mut route =
        DynamicObject::new(&vc.names.server, &httproute_resource()).within(&vc.namespace);
    route.metadata = labels::object_meta(vc, &vc.names.server, Component::Server);
    route.data = json!({
        "spec": {
            "parentRefs": [parent],
            "hostnames": vc.spec.exposure.host.iter().collect::<Vec<_>>(),
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [{
                    "group": "",
                    "kind": "Service",
                    "name": vc.names.server,
                    "port": defaults::PORT,
                }],
                "sessionPersistence": {
                    "sessionName": gateway.cookie_name,
                    "type": "Cookie",
                    "cookieConfig": {"lifetimeType": "Session"},
                },
            }],
        }
    });
    route
}
