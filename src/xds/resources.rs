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

use crate::registry::Listed;

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

/// Why an instance was left out of its load assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    pub instance_id: uuid::Uuid,
    pub why: String,
}

/// The endpoints of `instances`, one locality per (region, zone) pair of labels. An endpoint's
/// weight is its `weight_label` (1 when absent or unreadable, which is reported); a locality's
/// weight is the sum of its endpoints', so every endpoint keeps its share. Instances whose
/// endpoint is not `IP:port` are left out: gRPC's xDS clients take addresses, not names.
pub fn load_assignment(
    name: &str,
    instances: &[Listed],
    weight_label: &str,
) -> (ClusterLoadAssignment, Vec<LeftOut>) {
    let mut localities: BTreeMap<(&str, &str), Vec<LbEndpoint>> = BTreeMap::new();
    let mut left_out = Vec::new();
    for i in instances {
        let addr: SocketAddr = match i.endpoint.parse() {
            Ok(a) => a,
            Err(_) => {
                left_out.push(LeftOut {
                    instance_id: i.instance_id,
                    why: format!("endpoint {:?} is not IP:port", i.endpoint),
                });
                continue;
            }
        };
        let weight = match i
            .labels
            .get(weight_label)
            .filter(|_| !weight_label.is_empty())
        {
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
        };
        let label = |k: &str| i.labels.get(k).map(String::as_str).unwrap_or("");
        localities
            .entry((label(REGION_LABEL), label(ZONE_LABEL)))
            .or_default()
            .push(lb_endpoint(addr, weight, &i.instance_id.to_string()));
    }
    let endpoints = localities
        .into_iter()
        .map(|((region, zone), lb_endpoints)| {
            let sum: u64 = lb_endpoints
                .iter()
                .map(|e| u64::from(e.load_balancing_weight.map_or(1, |w| w.value)))
                .sum();
            let sum = u32::try_from(sum).unwrap_or(u32::MAX);
            LocalityLbEndpoints {
                locality: Some(Locality {
                    region: region.to_string(),
                    zone: zone.to_string(),
                    ..Default::default()
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
