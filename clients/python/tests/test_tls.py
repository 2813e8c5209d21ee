import pytest

from agent_registry import Client, Keeper, RegistryError


def test_mutual_tls_with_a_token_file(mtls, tmp_path):
    c = mtls.certs
    secret = tmp_path / "token"
    secret.write_text("admin-secret\n")
    client = Client(f"https://{mtls.target}", token_file=str(secret), tls_ca=c["ca"],
                    tls_cert=c["client_cert"], tls_key=c["client_key"])
    with Keeper(client, namespace="tls", logical_id="a") as k:
        assert k.wait(lambda k: k.connected and k.acks >= 1)
        assert [i.instance_id for i in client.discover("tls")] == [k.instance_id]


def test_without_a_client_certificate_the_handshake_fails(mtls):
    c = mtls.certs
    client = Client(mtls.target, token="admin-secret", tls_ca=c["ca"])
    with pytest.raises(RegistryError) as e:
        client.discover("tls")
    assert e.value.code == "UNAVAILABLE"


def test_a_wrong_token_over_tls_is_unauthenticated(mtls):
    c = mtls.certs
    client = Client(mtls.target, token="nope", tls_ca=c["ca"], tls_cert=c["client_cert"], tls_key=c["client_key"])
    with pytest.raises(RegistryError) as e:
        client.discover("tls")
    assert e.value.code == "UNAUTHENTICATED"
