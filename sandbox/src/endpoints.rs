//! The contract endpoints of each service, by the `METHOD /route-template` names that fault
//! settings and ledger counters use.

use axum::http::Method;

use crate::Service;

/// One contract endpoint: the route it is served on and which fault kinds make sense for it.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub method: &'static str,
    /// The axum route template, as reported by `MatchedPath`.
    pub template: &'static str,
    /// `METHOD /template`, the name used in fault settings and ledgers.
    pub label: &'static str,
    /// Whether the "honour `Idempotency-Key`" mode can apply (the create endpoints only).
    pub honors_idempotency_key: bool,
    /// Whether a forced decline can apply (creating a payment only).
    pub can_decline: bool,
}

const fn endpoint(method: &'static str, template: &'static str, label: &'static str) -> Endpoint {
    Endpoint {
        method,
        template,
        label,
        honors_idempotency_key: false,
        can_decline: false,
    }
}

static INVENTORY: [Endpoint; 4] = [
    endpoint("POST", "/admin/seed", "POST /admin/seed"),
    Endpoint {
        honors_idempotency_key: true,
        ..endpoint("POST", "/reserve", "POST /reserve")
    },
    endpoint(
        "POST",
        "/reservations/{id}/commit",
        "POST /reservations/{id}/commit",
    ),
    endpoint(
        "POST",
        "/reservations/{id}/release",
        "POST /reservations/{id}/release",
    ),
];

static PAYMENT: [Endpoint; 3] = [
    Endpoint {
        can_decline: true,
        ..endpoint("POST", "/payments", "POST /payments")
    },
    endpoint("GET", "/payments/{id}", "GET /payments/{id}"),
    endpoint(
        "POST",
        "/payments/{id}/refund",
        "POST /payments/{id}/refund",
    ),
];

static SHIPPING: [Endpoint; 5] = [
    Endpoint {
        honors_idempotency_key: true,
        ..endpoint("POST", "/shipments", "POST /shipments")
    },
    endpoint("GET", "/shipments", "GET /shipments"),
    endpoint("GET", "/shipments/{id}", "GET /shipments/{id}"),
    endpoint("PUT", "/shipments/{id}", "PUT /shipments/{id}"),
    endpoint("DELETE", "/shipments/{id}", "DELETE /shipments/{id}"),
];

/// The contract endpoints of `service`; their index is used as a compact endpoint id.
pub(crate) fn of(service: Service) -> &'static [Endpoint] {
    match service {
        Service::Inventory => &INVENTORY,
        Service::Payment => &PAYMENT,
        Service::Shipping => &SHIPPING,
    }
}

/// Index of the endpoint serving `method` on the matched route `template`.
pub(crate) fn find(service: Service, method: &Method, template: &str) -> Option<usize> {
    of(service)
        .iter()
        .position(|e| e.method == method.as_str() && e.template == template)
}

/// Index of the endpoint named `label` (`"POST /reserve"`); the method part may be any case.
pub(crate) fn find_label(service: Service, label: &str) -> Option<usize> {
    let (method, path) = label.trim().split_once(' ')?;
    of(service)
        .iter()
        .position(|e| e.method.eq_ignore_ascii_case(method) && e.template == path.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_match_method_and_template() {
        for service in Service::ALL {
            for e in of(service) {
                assert_eq!(e.label, format!("{} {}", e.method, e.template));
            }
        }
    }

    #[test]
    fn finds_labels_case_insensitively_by_method_only() {
        assert_eq!(find_label(Service::Payment, "post /payments"), Some(0));
        assert_eq!(find_label(Service::Payment, "POST /Payments"), None);
        assert_eq!(
            find_label(Service::Shipping, "DELETE /shipments/{id}"),
            Some(4)
        );
        assert_eq!(find_label(Service::Inventory, "GET /health"), None);
    }
}
