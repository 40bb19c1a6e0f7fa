//! The security settings every pod the operator builds shares: the restricted
//! Pod Security Standard (non-root, read-only root filesystem, no privilege
//! escalation, all capabilities dropped, RuntimeDefault seccomp).

use k8s_openapi::api::core::v1::{Capabilities, SeccompProfile, SecurityContext};

/// Container security for the restricted Pod Security Standard.
pub fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..Default::default()
    }
}

pub fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_string(),
        localhost_profile: None,
    }
}
