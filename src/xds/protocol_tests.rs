use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status;

use super::*;

fn request(type_url: &str, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.into(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn any(n: u8) -> Any {
    Any {
        type_url: ENDPOINTS.into(),
        value: vec![n],
    }
}

#[test]
fn a_first_request_is_owed_an_answer_and_versions_and_nonces_advance() {
    let mut p = Protocol::default();
    assert!(!p.subscribed(ENDPOINTS));
    assert_eq!(
        p.receive(&request(ENDPOINTS, &["a.ns"], "", "")),
        Received::Subscribed
    );
    assert!(p.owed(ENDPOINTS) && p.subscribed(ENDPOINTS));
    assert_eq!(p.names(ENDPOINTS).collect::<Vec<_>>(), vec!["a.ns"]);
    let first = p.respond(ENDPOINTS, vec![any(1)]).expect("owed");
    assert_eq!(
        (first.version_info.as_str(), first.nonce.as_str()),
        ("1", "1")
    );
    assert_eq!(first.type_url, ENDPOINTS);
    assert!(!p.owed(ENDPOINTS));
    assert_eq!(
        p.receive(&request(ENDPOINTS, &["a.ns"], "1", "1")),
        Received::Ack {
            version: "1".into(),
            resubscribed: false
        }
    );
    assert_eq!(
        p.respond(ENDPOINTS, vec![any(1)]),
        None,
        "unchanged: not sent"
    );
    let second = p.respond(ENDPOINTS, vec![any(2)]).expect("changed");
    assert_eq!(
        (second.version_info.as_str(), second.nonce.as_str()),
        ("2", "2")
    );
    // Nonces are unique across types on the stream.
    p.receive(&request(LISTENER, &["a.ns"], "", ""));
    let listener = p.respond(LISTENER, vec![]).expect("owed");
    assert_eq!(
        (listener.version_info.as_str(), listener.nonce.as_str()),
        ("1", "3")
    );
}

#[test]
fn a_nack_is_reported_once_and_never_answered_with_the_same_response() {
    let mut p = Protocol::default();
    p.receive(&request(CLUSTER, &["a.ns"], "", ""));
    let sent = p.respond(CLUSTER, vec![any(1)]).unwrap();
    let mut nack = request(CLUSTER, &["a.ns"], "", &sent.nonce);
    nack.error_detail = Some(Status {
        code: 3,
        message: "bad cluster".into(),
        details: vec![],
    });
    assert_eq!(
        p.receive(&nack),
        Received::Nack {
            version: "".into(),
            detail: "bad cluster".into(),
            resubscribed: false
        }
    );
    assert!(!p.owed(CLUSTER), "no loop: nothing is owed after a NACK");
    assert_eq!(p.respond(CLUSTER, vec![any(1)]), None);
    assert!(
        p.respond(CLUSTER, vec![any(2)]).is_some(),
        "a change is sent"
    );
}

#[test]
fn stale_nonces_are_ignored_and_new_names_are_owed_an_answer() {
    let mut p = Protocol::default();
    p.receive(&request(ENDPOINTS, &["a.ns"], "", ""));
    let one = p.respond(ENDPOINTS, vec![any(1)]).unwrap();
    let two = p.respond(ENDPOINTS, vec![any(2)]).unwrap();
    assert_eq!(
        p.receive(&request(ENDPOINTS, &["a.ns", "b.ns"], "1", &one.nonce)),
        Received::Stale
    );
    assert_eq!(
        p.names(ENDPOINTS).count(),
        1,
        "a stale request changes nothing"
    );
    assert_eq!(
        p.receive(&request(ENDPOINTS, &["a.ns", "b.ns"], "2", &two.nonce)),
        Received::Ack {
            version: "2".into(),
            resubscribed: true
        }
    );
    assert!(p.owed(ENDPOINTS));
    let three = p
        .respond(ENDPOINTS, vec![any(2)])
        .expect("owed although unchanged");
    assert_eq!(three.version_info, "3");
}

#[test]
fn a_first_request_naming_another_streams_nonce_is_answered() {
    let mut p = Protocol::default();
    assert_eq!(
        p.receive(&request(ENDPOINTS, &["a.ns"], "9", "41")),
        Received::Subscribed
    );
    assert!(p.owed(ENDPOINTS));
    assert!(p.respond(ENDPOINTS, vec![any(1)]).is_some());
}

#[test]
fn a_reconnecting_client_is_answered_and_unknown_types_and_too_many_names_are_flagged() {
    let mut p = Protocol::default();
    // A client back from another replica names the version it holds and no nonce.
    assert_eq!(
        p.receive(&request(LISTENER, &["a.ns"], "17", "")),
        Received::Subscribed
    );
    assert!(p.owed(LISTENER));
    assert_eq!(
        p.receive(&request(
            "type.googleapis.com/envoy.config.core.v3.Secret",
            &[],
            "",
            ""
        )),
        Received::UnknownType
    );
    let many: Vec<String> = (0..=MAX_NAMES).map(|i| format!("a{i}.ns")).collect();
    let names: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        p.receive(&request(ENDPOINTS, &names, "", "")),
        Received::TooManyNames(MAX_NAMES + 1)
    );
    assert!(!p.subscribed(ENDPOINTS));
}
