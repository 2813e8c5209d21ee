use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::address;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager, http_filter,
};
use prost::Message;

use super::*;
use agent_registry_core::domain::Instance;

fn listed(endpoint: &str, labels: &[(&str, &str)]) -> Listed {
    let row = Instance {
        endpoint: endpoint.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Instance::sample("planner")
    };
    Listed {
        last_heartbeat: row.last_heartbeat,
        row: Arc::new(row),
    }
}

/// A locality as `region/zone/sub_zone`, its weight, and its endpoints with their weights.
type Grouped = (String, u32, Vec<(String, u32)>);

fn address_of(e: &LbEndpoint) -> String {
    let Some(lb_endpoint::HostIdentifier::Endpoint(ep)) = &e.host_identifier else {
        panic!("no endpoint");
    };
    let Some(address::Address::SocketAddress(sa)) = ep.address.as_ref().unwrap().address.as_ref()
    else {
        panic!("no socket address");
    };
    let Some(socket_address::PortSpecifier::PortValue(port)) = sa.port_specifier else {
        panic!("no port");
    };
    format!("{}:{port}", sa.address)
}

#[test]
fn the_listener_routes_inline_to_the_cluster_of_its_name_and_ends_with_the_router() {
    let l = listener("planner.prod");
    assert_eq!(l.name, "planner.prod");
    let any = l.api_listener.unwrap().api_listener.unwrap();
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    );
    let manager = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
    let Some(http_connection_manager::RouteSpecifier::RouteConfig(routes)) =
        manager.route_specifier
    else {
        panic!("the route is inline");
    };
    assert_eq!(routes, route_configuration("planner.prod"));
    let host = &routes.virtual_hosts[0];
    assert_eq!(host.domains, vec!["*"]);
    let Some(route::Action::Route(action)) = &host.routes[0].action else {
        panic!("a route action");
    };
    assert_eq!(
        action.cluster_specifier,
        Some(route_action::ClusterSpecifier::Cluster(
            "planner.prod".into()
        ))
    );
    let last = manager.http_filters.last().unwrap();
    let Some(http_filter::ConfigType::TypedConfig(router)) = &last.config_type else {
        panic!("typed router config");
    };
    assert_eq!(
        router.type_url,
        "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    );
}

#[test]
fn the_cluster_takes_its_endpoints_from_ads_round_robin() {
    let c = cluster("planner.prod");
    assert_eq!(c.name, "planner.prod");
    assert_eq!(
        c.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32
        ))
    );
    let eds = c.eds_cluster_config.unwrap();
    assert_eq!(eds.service_name, "planner.prod");
    assert!(matches!(
        eds.eds_config.unwrap().config_source_specifier,
        Some(config_source::ConfigSourceSpecifier::Ads(_))
    ));
    assert_eq!(c.lb_policy, cluster::LbPolicy::RoundRobin as i32);
    assert_eq!(pack(&cluster("x.y")).type_url, CLUSTER);
    assert_eq!(pack(&listener("x.y")).type_url, LISTENER);
    assert_eq!(pack(&route_configuration("x.y")).type_url, ROUTE);
}

/// Each locality's region, zone, sub-zone and weight, with its endpoints and their weights.
fn grouped(cla: &ClusterLoadAssignment) -> Vec<Grouped> {
    cla.endpoints
        .iter()
        .map(|l| {
            let loc = l.locality.clone().unwrap();
            let eps = l
                .lb_endpoints
                .iter()
                .map(|e| (address_of(e), e.load_balancing_weight.unwrap().value))
                .collect();
            (
                format!("{}/{}/{}", loc.region, loc.zone, loc.sub_zone),
                l.load_balancing_weight.unwrap().value,
                eps,
            )
        })
        .collect()
}

fn endpoints(list: &[(&str, u32)]) -> Vec<(String, u32)> {
    list.iter().map(|(a, w)| (a.to_string(), *w)).collect()
}

#[test]
fn endpoints_are_grouped_by_zone_and_weight_and_non_addresses_left_out() {
    let zone = |r: &'static str, z: &'static str| [(REGION_LABEL, r), (ZONE_LABEL, z)];
    let a = listed("10.0.0.1:50051", &zone("eu", "eu-1a"));
    let b = listed(
        "10.0.0.2:50051",
        &[zone("eu", "eu-1a").as_slice(), &[("w", "3")]].concat(),
    );
    let b2 = listed(
        "10.0.0.5:50051",
        &[zone("eu", "eu-1a").as_slice(), &[("w", "3")]].concat(),
    );
    let c = listed("[fd00::3]:7000", &zone("eu", "eu-1b"));
    let bad_weight = listed("10.0.0.4:1", &[("w", "heavy")]);
    let named = listed("planner.internal:50051", &[]);
    let empty = listed("", &[]);
    let instances = [
        a,
        b,
        b2,
        c,
        bad_weight.clone(),
        named.clone(),
        empty.clone(),
    ];
    let (cla, left_out) = load_assignment("planner.prod", &instances, "w");
    assert_eq!(cla.cluster_name, "planner.prod");
    assert_eq!(
        grouped(&cla),
        vec![
            ("//w1".into(), 1, endpoints(&[("10.0.0.4:1", 1)])),
            ("eu/eu-1a/w1".into(), 1, endpoints(&[("10.0.0.1:50051", 1)])),
            (
                "eu/eu-1a/w3".into(),
                6,
                endpoints(&[("10.0.0.2:50051", 3), ("10.0.0.5:50051", 3)])
            ),
            ("eu/eu-1b/w1".into(), 1, endpoints(&[("fd00::3:7000", 1)])),
        ]
    );
    let all_healthy = cla
        .endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .all(|e| e.health_status == HealthStatus::Healthy as i32);
    assert!(all_healthy);
    let ids: Vec<_> = left_out.iter().map(|l| l.instance_id).collect();
    assert_eq!(
        ids,
        vec![bad_weight.instance_id, named.instance_id, empty.instance_id]
    );
    assert!(left_out[0].why.contains("using 1"), "{:?}", left_out[0]);
    assert!(left_out[1].why.contains("not IP:port"), "{:?}", left_out[1]);
}

#[test]
fn one_address_is_given_once_by_the_instance_that_beat_last() {
    let mut old = listed("10.0.0.1:1", &[]);
    let new = listed("10.0.0.1:1", &[]);
    old.last_heartbeat = new.last_heartbeat - chrono::Duration::seconds(5);
    for order in [[old.clone(), new.clone()], [new.clone(), old.clone()]] {
        let (cla, left_out) = load_assignment("x.y", &order, "");
        let eps: Vec<_> = cla.endpoints.iter().flat_map(|l| &l.lb_endpoints).collect();
        assert_eq!(eps.len(), 1);
        let Some(lb_endpoint::HostIdentifier::Endpoint(ep)) = &eps[0].host_identifier else {
            panic!("an endpoint");
        };
        assert_eq!(ep.hostname, new.instance_id.to_string());
        assert_eq!(left_out.len(), 1);
        assert_eq!(left_out[0].instance_id, old.instance_id);
        assert!(
            left_out[0].why.contains("also instance"),
            "{:?}",
            left_out[0]
        );
    }
}

#[test]
fn weights_that_would_overflow_the_total_all_count_one() {
    let heavy: Vec<Listed> = (0..=u16::MAX as u32 + 1)
        .map(|n| {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + n);
            listed(&format!("{ip}:1"), &[("w", "65536")])
        })
        .collect();
    let (cla, _) = load_assignment("x.y", &heavy, "w");
    assert_eq!(cla.endpoints.len(), 1);
    assert_eq!(cla.endpoints[0].locality.as_ref().unwrap().sub_zone, "w1");
    assert_eq!(
        cla.endpoints[0].load_balancing_weight.unwrap().value,
        heavy.len() as u32
    );
}

#[test]
fn no_instances_is_an_assignment_without_endpoints_and_no_label_means_weight_one() {
    let (cla, left_out) = load_assignment("planner.prod", &[], "w");
    assert_eq!(cla.cluster_name, "planner.prod");
    assert!(cla.endpoints.is_empty() && left_out.is_empty());
    let heavy = listed("10.0.0.1:1", &[("w", "9")]);
    let (cla, _) = load_assignment("x.y", &[heavy], "");
    let weight = cla.endpoints[0].lb_endpoints[0].load_balancing_weight;
    assert_eq!(
        weight.unwrap().value,
        1,
        "an empty label name weighs nothing"
    );
}
