//! The client Service (what clients and the exposure route to), the server API Service
//! (what backends publish through; nothing routes to it) and the headless Service
//! (per-pod DNS; the autoscaler scrapes pods through it).

use super::deployment::{ADMIN_PORT_NAME, HTTP_PORT_NAME};
use super::labels::{self, Component};
use crate::validate::ValidatedCluster;
use k8s_openapi::api::core::v1::{
    ClientIPConfig, Service, ServicePort, ServiceSpec, SessionAffinityConfig,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use push_contract::defaults;

fn port(name: &str, port: u16) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port: i32::from(port),
        target_port: Some(IntOrString::String(name.to_string())),
        protocol: Some("TCP".to_string()),
        ..Default::default()
    }
}

/// The client Service: port `http` only (never the admin port). In service
/// mode it carries ClientIP affinity; with Traefik it carries the sticky-cookie
/// annotations Traefik reads from the Service.
pub fn client_service(vc: &ValidatedCluster) -> Service {
    let mut metadata = labels::object_meta(vc, &vc.names.server, Component::Server);
    let annotations = super::exposure::client_service_annotations(vc);
    if !annotations.is_empty() {
        metadata.annotations = Some(annotations);
    }
    let mut spec = ServiceSpec {
        selector: Some(labels::selector_labels(vc, Component::Server)),
        ports: Some(vec![port(HTTP_PORT_NAME, defaults::PORT)]),
        type_: Some("ClusterIP".to_string()),
        ..Default::default()
    };
    if let Some(service) = &vc.spec.exposure.service {
        spec.type_ = Some(
            match service.service_type {
                crate::resources::ServiceType::ClusterIP => "ClusterIP",
                crate::resources::ServiceType::NodePort => "NodePort",
                crate::resources::ServiceType::LoadBalancer => "LoadBalancer",
            }
            .to_string(),
        );
        spec.session_affinity = Some("ClientIP".to_string());
        spec.session_affinity_config = Some(SessionAffinityConfig {
            client_ip: Some(ClientIPConfig {
                timeout_seconds: Some(service.affinity_timeout_seconds),
            }),
        });
    }
    Service {
        metadata,
        spec: Some(spec),
        status: None,
    }
}

/// The server API Service: port `admin` only (the publish API, metrics, health), a
/// ClusterIP for backends inside the cluster. No exposure mode routes to it, so making
/// the cluster reachable for browsers never makes the publish API reachable.
pub fn api_service(vc: &ValidatedCluster) -> Service {
    Service {
        metadata: labels::object_meta(vc, &vc.names.api, Component::Server),
        spec: Some(ServiceSpec {
            selector: Some(labels::selector_labels(vc, Component::Server)),
            ports: Some(vec![port(ADMIN_PORT_NAME, defaults::ADMIN_PORT)]),
            type_: Some("ClusterIP".to_string()),
            ..Default::default()
        }),
        status: None,
    }
}

/// The headless Service: one DNS record per pod, ready or not, with both ports.
pub fn headless_service(vc: &ValidatedCluster) -> Service {
    Service {
        metadata: labels::object_meta(vc, &vc.names.headless, Component::Server),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            selector: Some(labels::selector_labels(vc, Component::Server)),
            ports: Some(vec![
                port(HTTP_PORT_NAME, defaults::PORT),
                port(ADMIN_PORT_NAME, defaults::ADMIN_PORT),
            ]),
            publish_not_ready_addresses: Some(true),
            ..Default::default()
        }),
        status: None,
    }
}
