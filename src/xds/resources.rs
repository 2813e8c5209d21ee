//! The four xDS resources a gRPC client asks for, built for one target name: a Listener whose
//! inline HttpConnectionManager routes everything to the Cluster of the same name, that Cluster
//! (type EDS, over ADS, round robin), and its ClusterLoadAssignment from the instances.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, HealthStatus, Locality, SocketAddress,
    address, config_source, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{ApiListener, Listener};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager, http_filter,
};
use envoy_types::pb::google::protobuf::{Any, UInt32Value};
use prost::{Message, Name};

use agent_registry_core::registry::Listed;

pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINTS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// The labels that place an instance in a locality (gRPC picks localities by weight).
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The largest weight a label may give one endpoint (so a locality's sum cannot overflow).
pub const MAX_WEIGHT: u32 = 1 << 16;

pub fn pack<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// The route everything to the cluster of the same name, inline (no RDS round trip).
pub fn route_configuration(name: &str) -> RouteConfiguration {
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: name.to_string(),
            domains: vec!["*".into()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::Prefix(String::new())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                        name.to_string(),
                    )),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A Listener for a client (an API listener): its connection manager carries the route and
/// ends with the router filter, as gRPC requires.
pub fn listener(name: &str) -> Listener {
    let manager = HttpConnectionManager {
        stat_prefix: name.to_string(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(
            route_configuration(name),
        )),
        http_filters: vec![HttpFilter {
            name: "router".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack(
                &Router::default(),
            ))),
            ..Default::default()
        }],
        ..Default::default()
    };
    Listener {
        name: name.to_string(),
        api_listener: Some(ApiListener {
            api_listener: Some(pack(&manager)),
        }),
        ..Default::default()
    }
}

/// An EDS cluster whose endpoints come over the same ADS stream, picked round robin.
pub fn cluster(name: &str) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ConfigSource {
                resource_api_version: ApiVersion::V3 as i32,
                config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
                    AggregatedConfigSource {},
                )),
                ..Default::default()
            }),
            service_name: name.to_string(),
        }),
        lb_policy: cluster::LbPolicy::RoundRobin as i32,
        ..Default::default()
    }
}

/// Why an instance was left out of its load assignment (or weighed other than it asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    pub instance_id: uuid::Uuid,
    pub why: String,
}

/// The endpoints of `instances` (in the registry's order), one locality per (region, zone,
/// weight): gRPC picks a locality by weight and round-robins inside it, ignoring endpoint
/// weights, so endpoints of one weight share a locality (`sub_zone` `w<weight>`) whose weight is
/// their sum, and every endpoint gets its share. The weight is the `weight_label` (1 when
/// absent; an unreadable one counts 1 and is reported). Left out and reported: an endpoint
/// that is not `IP:port` (gRPC's xDS clients take addresses, not names), and a second instance
/// at an address already given (clients refuse duplicates; the newest beat keeps it).
pub fn load_assignment(
    name: &str,
    instances: &[Listed],
    weight_label: &str,
) -> (ClusterLoadAssignment, Vec<LeftOut>) {
    let mut left_out = Vec::new();
    let mut by_address: BTreeMap<SocketAddr, (&Listed, u32)> = BTreeMap::new();
    for i in instances {
        let Ok(addr) = i.endpoint.parse::<SocketAddr>() else {
            left_out.push(LeftOut {
                instance_id: i.instance_id,
                why: format!("endpoint {:?} is not IP:port", i.endpoint),
            });
            continue;
        };
        let weight = weight_of(i, weight_label, &mut left_out);
        match by_address.get(&addr) {
            Some((kept, _)) if kept.last_heartbeat >= i.last_heartbeat => {
                left_out.push(duplicate(i, kept, addr));
            }
            Some((kept, _)) => {
                left_out.push(duplicate(kept, i, addr));
                by_address.insert(addr, (i, weight));
            }
            None => {
                by_address.insert(addr, (i, weight));
            }
        }
    }
    // gRPC refuses an assignment whose locality weights add up past u32: then all weigh 1.
    let total: u64 = by_address.values().map(|(_, w)| u64::from(*w)).sum();
    let flat = total > u64::from(u32::MAX);
    let mut localities: BTreeMap<(&str, &str, u32), Vec<LbEndpoint>> = BTreeMap::new();
    for (addr, (i, weight)) in &by_address {
        let weight = if flat { 1 } else { *weight };
        let label = |k: &str| i.labels.get(k).map(String::as_str).unwrap_or("");
        localities
            .entry((label(REGION_LABEL), label(ZONE_LABEL), weight))
            .or_default()
            .push(lb_endpoint(*addr, weight, &i.instance_id.to_string()));
    }
    let endpoints = localities
        .into_iter()
        .map(|((region, zone, weight), lb_endpoints)| {
            let sum = weight * lb_endpoints.len() as u32;
            LocalityLbEndpoints {
                locality: Some(Locality {
                    region: region.to_string(),
                    zone: zone.to_string(),
                    sub_zone: format!("w{weight}"),
                }),
                lb_endpoints,
                load_balancing_weight: Some(UInt32Value { value: sum }),
                priority: 0,
                ..Default::default()
            }
        })
        .collect();
    let assignment = ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints,
        ..Default::default()
    };
    (assignment, left_out)
}

/// An instance's weight from its label, 1 when absent; an unreadable one is reported.
fn weight_of(i: &Listed, weight_label: &str, left_out: &mut Vec<LeftOut>) -> u32 {
    if weight_label.is_empty() {
        return 1;
    }
    match i.labels.get(weight_label) {
        None => 1,
        Some(w) => match w.parse::<u32>() {
            Ok(w) if (1..=MAX_WEIGHT).contains(&w) => w,
            _ => {
                left_out.push(LeftOut {
                    instance_id: i.instance_id,
                    why: format!(
                        "label {weight_label}={w:?} is not a weight 1-{MAX_WEIGHT}; using 1"
                    ),
                });
                1
            }
        },
    }
}

fn duplicate(dropped: &Listed, kept: &Listed, addr: SocketAddr) -> LeftOut {
    LeftOut {
        instance_id: dropped.instance_id,
        why: format!(
            "endpoint {addr} is also instance {}'s, which beat more recently",
            kept.instance_id
        ),
    }
}

fn lb_endpoint(addr: SocketAddr, weight: u32, hostname: &str) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(envoy_types::pb::envoy::config::core::v3::Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: addr.ip().to_string(),
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(
                        addr.port().into(),
                    )),
                    ..Default::default()
                })),
            }),
            hostname: hostname.to_string(),
            ..Default::default()
        })),
        health_status: HealthStatus::Healthy as i32,
        load_balancing_weight: Some(UInt32Value { value: weight }),
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "resources_tests.rs"]
mod tests;
