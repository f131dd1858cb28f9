//! Builds each service's router: its state, its fault table, the contract routes behind the
//! fault middleware, and the routes that faults never touch.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::middleware::from_fn_with_state;

use crate::config::{ConfigError, SandboxConfig};
use crate::faults::{self, FaultTable};
use crate::http::with_common_routes;
use crate::requests::{self, RequestLog};
use crate::shutdown::ShutdownSignal;
use crate::{Service, inventory, payment, shipping};

/// The three routers, ready to serve.
pub(crate) struct Routers {
    pub inventory: Router,
    pub payment: Router,
    pub shipping: Router,
}

/// Builds the three services from `config`, applying its faults as the admin route would.
pub(crate) fn build(
    config: &SandboxConfig,
    shutdown: &ShutdownSignal,
) -> Result<Routers, ConfigError> {
    let table = |service: Service| -> Result<Arc<FaultTable>, ConfigError> {
        let table = FaultTable::new(service, config.seed, shutdown.clone());
        for (_, settings) in config.faults.iter().filter(|(s, _)| *s == service) {
            table
                .apply(settings)
                .map_err(|source| ConfigError::Fault { service, source })?;
        }
        Ok(Arc::new(table))
    };

    let faults = table(Service::Inventory)?;
    let state = Arc::new(Mutex::new(inventory::Inventory::new(&config.stock)));
    let inventory = assemble(
        &faults,
        inventory::contract_routes(state.clone(), faults.clone()),
        inventory::control_routes(state, faults.clone()),
    );

    let faults = table(Service::Payment)?;
    let state = Arc::new(Mutex::new(payment::PaymentBook::default()));
    let payment = assemble(
        &faults,
        payment::contract_routes(state.clone(), faults.clone()),
        payment::control_routes(state, faults.clone()),
    );

    let faults = table(Service::Shipping)?;
    let state = Arc::new(Mutex::new(shipping::ShipmentBook::default()));
    let shipping = assemble(
        &faults,
        shipping::contract_routes(state.clone(), faults.clone()),
        shipping::control_routes(state, faults.clone()),
    );

    Ok(Routers {
        inventory,
        payment,
        shipping,
    })
}

/// `route_layer` puts the fault middleware on the contract routes only, after routing, so
/// it sees the matched route template; the control routes are merged in afterwards.
/// The request recorder sits outside the fault middleware, so faulted requests are
/// recorded too.
fn assemble(faults: &Arc<FaultTable>, contract: Router, control: Router) -> Router {
    let log = RequestLog::default();
    let contract = contract
        .route_layer(from_fn_with_state(faults.clone(), faults::inject))
        .route_layer(from_fn_with_state(log.clone(), requests::record));
    let router = contract
        .merge(control)
        .merge(faults::routes(faults.clone()))
        .merge(requests::routes(log));
    with_common_routes(faults.service(), router)
}
