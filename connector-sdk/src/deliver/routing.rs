//! The kit's routing: which pool serves each target, built from the
//! sink's routes at start and again on a live reload
//! ([`Delivery::renew`](super::Delivery::renew)), reusing the endpoints and
//! pools it already has by key.

use std::collections::HashMap;
use std::sync::Arc;

use super::budget::Budget;
use super::destination::Destination;
use super::endpoint::Endpoint;
use super::outbox::Outbox;
use super::parcel::Route;
use super::pool::{Pool, lock};
use super::settings::Settings;
use super::{RouteError, StartError, pool_key};
use crate::store::Store;

/// Targets, their pools, and the destinations in them.
pub(crate) struct Routing<D: Destination> {
    pub targets: HashMap<Arc<str>, Arc<Pool<D>>>,
    pub pools: Vec<Arc<Pool<D>>>,
    pub endpoints: Vec<Arc<Endpoint<D>>>,
    /// Pools and destinations no longer routed: a retired pool's flusher
    /// keeps sending what its outbox holds, with its last settings, and
    /// both are taken up again if a renewal routes them once more.
    pub retired_pools: Vec<Arc<Pool<D>>>,
    pub retired_endpoints: Vec<Arc<Endpoint<D>>>,
}

impl<D: Destination> Routing<D> {
    pub(crate) fn empty() -> Self {
        Self {
            targets: HashMap::new(),
            pools: Vec::new(),
            endpoints: Vec::new(),
            retired_pools: Vec::new(),
            retired_endpoints: Vec::new(),
        }
    }
}

/// The routing for `routes`, reusing what `old` has by key: endpoints by
/// their destination's key, pools by their members' keys (current or
/// retired), so budgets, outboxes and flushers carry on.
pub(crate) async fn build<D: Destination>(
    store: &Store,
    settings: &Arc<Settings>,
    routes: Vec<Route<D>>,
    old: &Routing<D>,
) -> Result<Routing<D>, StartError> {
    let reserved = settings.outbox.as_ref().map_or(0, |outbox| outbox.reserved);
    let known_endpoints: Vec<&Arc<Endpoint<D>>> =
        old.endpoints.iter().chain(&old.retired_endpoints).collect();
    let known_pools: Vec<&Arc<Pool<D>>> = old.pools.iter().chain(&old.retired_pools).collect();
    let mut endpoints: Vec<Arc<Endpoint<D>>> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    let mut pools: Vec<Arc<Pool<D>>> = Vec::new();
    let mut pool_of_members: HashMap<Vec<usize>, usize> = HashMap::new();
    let mut targets = HashMap::new();
    // Adopted destinations: applied only once the whole routing is built.
    let mut adopted: Vec<(Arc<Endpoint<D>>, D)> = Vec::new();
    for route in routes {
        let target: Arc<str> = Arc::from(route.target);
        if targets.contains_key(&target) {
            return Err(RouteError::Twice(target.to_string()).into());
        }
        if route.destinations.is_empty() {
            return Err(RouteError::NoDestination(target.to_string()).into());
        }
        let mut members = Vec::new();
        for destination in route.destinations {
            let key = destination.key().to_owned();
            let at = match by_key.get(&key) {
                Some(&at) => {
                    lock(&endpoints[at].targets).push(Arc::clone(&target));
                    at
                }
                None => {
                    let known = known_endpoints
                        .iter()
                        .find(|endpoint| endpoint.destination.key() == key);
                    let endpoint = match known {
                        Some(endpoint) => {
                            *lock(&endpoint.targets) = vec![Arc::clone(&target)];
                            adopted.push((Arc::clone(endpoint), destination));
                            Arc::clone(endpoint)
                        }
                        None => {
                            if !destination.paced() {
                                tracing::warn!(target = %target, key, "pacing is OFF for this destination; a real one blocks a sender that goes over its limit");
                            }
                            let budget = Budget::new(
                                store.clone(),
                                &key,
                                destination.windows(),
                                destination.paced(),
                                reserved,
                            )
                            .sharing(destination.shared_budget());
                            if !store.is_shared() {
                                // A hold from before a restart still holds.
                                budget.restore().await?;
                            }
                            Arc::new(Endpoint::new(
                                destination,
                                budget,
                                Arc::clone(&target),
                                settings.cooldown,
                            ))
                        }
                    };
                    endpoints.push(endpoint);
                    by_key.insert(key, endpoints.len() - 1);
                    endpoints.len() - 1
                }
            };
            if !members.contains(&at) {
                members.push(at);
            }
        }
        let mut member_set = members.clone();
        member_set.sort_unstable();
        let pool = match pool_of_members.get(&member_set) {
            Some(&at) => {
                lock(&pools[at].targets).push(Arc::clone(&target));
                Arc::clone(&pools[at])
            }
            None => {
                let keys: Vec<&str> = members
                    .iter()
                    .map(|&m| endpoints[m].destination.key())
                    .collect();
                let same_members = |pool: &&&Arc<Pool<D>>| {
                    pool.members.len() == members.len()
                        && pool
                            .members
                            .iter()
                            .all(|a| members.iter().any(|&b| Arc::ptr_eq(a, &endpoints[b])))
                };
                let pool = match known_pools.iter().find(same_members) {
                    Some(pool) => {
                        *lock(&pool.targets) = vec![Arc::clone(&target)];
                        Arc::clone(pool)
                    }
                    None => {
                        let outbox = match &settings.outbox {
                            Some(outbox) => Some(
                                Outbox::open(
                                    store.clone(),
                                    &pool_key(&keys),
                                    outbox.max_queued,
                                    Arc::clone(&target),
                                )
                                .await?,
                            ),
                            None => None,
                        };
                        Arc::new(Pool::new(
                            members.iter().map(|&m| Arc::clone(&endpoints[m])).collect(),
                            outbox,
                            Arc::clone(&target),
                            Arc::clone(settings),
                        ))
                    }
                };
                pool_of_members.insert(member_set, pools.len());
                pools.push(Arc::clone(&pool));
                pool
            }
        };
        targets.insert(target, pool);
    }
    let retired_pools = known_pools
        .into_iter()
        .filter(|pool| !pools.iter().any(|p| Arc::ptr_eq(p, pool)))
        .cloned()
        .collect();
    let retired_endpoints = known_endpoints
        .into_iter()
        .filter(|endpoint| !endpoints.iter().any(|e| Arc::ptr_eq(e, endpoint)))
        .cloned()
        .collect();
    for (endpoint, newer) in adopted {
        endpoint.destination.adopt(newer);
    }
    Ok(Routing {
        targets,
        pools,
        endpoints,
        retired_pools,
        retired_endpoints,
    })
}
