"""Settings come only from the environment and bad values are named."""

import importlib.util

import pytest

from producer_api.config import ConfigError, Settings
from producer_api.kafka.options import _no_key_password, producer_config


def test_defaults_match_the_seed_guide():
    settings = Settings.from_env({})
    assert settings.port == 8001
    assert settings.bootstrap_servers == "localhost:9092"
    assert settings.client_id == "python-producer-api"
    assert settings.batch_size == 16384
    assert settings.linger_ms == 0
    assert settings.max_in_flight == 2


def test_values_are_read_from_the_environment():
    settings = Settings.from_env({
        "KAFKA_BOOTSTRAP_SERVERS": "kafka:29092, other:9092",
        "PRODUCER_PORT": "9000",
        "KAFKA_COMPRESSION_TYPE": "GZIP",
        "KAFKA_API_VERSION": "3.9",
    })
    assert settings.bootstrap_servers == "kafka:29092,other:9092"
    assert settings.port == 9000
    assert settings.compression_type == "gzip"
    assert settings.api_version == (3, 9)


def test_the_worker_class_is_gevent_unless_gthread_is_asked_for():
    assert Settings.from_env({}).worker_class == "gevent"
    settings = Settings.from_env({"PRODUCER_WORKER_CLASS": "GThread", "PRODUCER_THREADS": "8"})
    assert (settings.worker_class, settings.threads) == ("gthread", 8)
    assert Settings.from_env({"PRODUCER_WORKER_CONNECTIONS": "200"}).worker_connections == 200


def test_blank_values_fall_back_to_defaults():
    assert Settings.from_env({"PRODUCER_PORT": "  "}).port == 8001


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PRODUCER_PORT", "eighty"),
        ("PRODUCER_PORT", "70000"),
        ("PRODUCER_WORKERS", "0"),
        ("PRODUCER_WORKER_CLASS", "sync"),
        ("PRODUCER_WORKER_CONNECTIONS", "0"),
        ("KAFKA_BOOTSTRAP_SERVERS", "no-port-here"),
        ("KAFKA_BOOTSTRAP_SERVERS", ","),
        ("KAFKA_COMPRESSION_TYPE", "brotli"),
        ("KAFKA_API_VERSION", "0.10"),
        ("KAFKA_API_VERSION", "four"),
        ("KAFKA_HEALTH_TIMEOUT_MS", "5000"),
        ("LOG_LEVEL", "loud"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_delivery_timeout_must_cover_request_timeout():
    with pytest.raises(ConfigError, match="KAFKA_DELIVERY_TIMEOUT_MS"):
        Settings.from_env({"KAFKA_REQUEST_TIMEOUT_MS": "8000", "KAFKA_DELIVERY_TIMEOUT_MS": "5000"})


def test_close_timeout_must_fit_in_the_graceful_timeout():
    with pytest.raises(ConfigError, match="KAFKA_CLOSE_TIMEOUT_MS"):
        Settings.from_env({"PRODUCER_GRACEFUL_TIMEOUT": "5", "KAFKA_CLOSE_TIMEOUT_MS": "5000"})


def test_the_flush_on_shutdown_keeps_its_time_after_the_longest_request():
    # Defaults: 10 s of flush after a request of at most 2 + 1 + 5 + 1 + 9.5 + 0.25 s fits in 30 s.
    assert Settings.from_env({}).graceful_timeout == 30
    assert Settings.from_env({}).longest_request_s == 18.75
    with pytest.raises(ConfigError, match=r"10000 \+ 39750 ms and 30 s"):
        Settings.from_env({"KAFKA_DELIVERY_TIMEOUT_MS": "30500"})
    assert Settings.from_env({"KAFKA_DELIVERY_TIMEOUT_MS": "30500", "PRODUCER_GRACEFUL_TIMEOUT": "50"})
    # A stopping worker also waits for a silent client, up to PRODUCER_CLIENT_TIMEOUT.
    with pytest.raises(ConfigError, match=r"10000 \+ 27000 ms and 30 s"):
        Settings.from_env({"PRODUCER_CLIENT_TIMEOUT": "25"})


def test_docs_or_metrics_protected_without_any_key_is_refused():
    for name in ("PRODUCER_PROTECT_DOCS", "PRODUCER_PROTECT_METRICS"):
        with pytest.raises(ConfigError, match=f"^{name} is true but no API key is configured"):
            Settings.from_env({name: "true"})
        assert Settings.from_env({name: "true", "PRODUCER_API_KEYS": '[{"name": "ops", "key": "k-1234567890abcdef"}]'})


def test_an_allow_list_without_a_pattern_is_refused():
    with pytest.raises(ConfigError, match="PRODUCER_TOPIC_ALLOW names no topic pattern"):
        Settings.from_env({"PRODUCER_TOPIC_ALLOW": " , ,"})


@pytest.mark.parametrize(("codec", "module", "package"), [("snappy", "snappy", "python-snappy"), ("lz4", "lz4", "lz4"),
                                                          ("zstd", "zstandard", "zstandard")])
def test_a_codec_whose_package_is_missing_is_refused_at_start(monkeypatch, codec, module, package):
    installed = {}
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return installed.get(name) if name == module else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigError, match=f"KAFKA_COMPRESSION_TYPE {codec} needs the Python package {package}"):
        Settings.from_env({"KAFKA_COMPRESSION_TYPE": codec})
    installed[module] = object()  # once installed: accepted
    assert Settings.from_env({"KAFKA_COMPRESSION_TYPE": codec}).compression_type == codec


def test_the_pending_limit_holds_the_largest_batch():
    with pytest.raises(ConfigError, match="PRODUCER_MAX_PENDING_MESSAGES must be at least PRODUCER_MAX_BATCH_MESSAGES"):
        Settings.from_env({"PRODUCER_MAX_PENDING_MESSAGES": "5"})
    assert Settings.from_env({"PRODUCER_MAX_PENDING_MESSAGES": "5", "PRODUCER_MAX_BATCH_MESSAGES": "5"})


def test_every_request_wait_is_bounded_below_a_minute():
    assert Settings.from_env({}).produce_wait_s < 60


# --- Kafka connection security ---

PASSWORD = "pw-that-must-never-show-9c2f"
KEY_PASSWORD = "key-pass-3d9a71"


@pytest.fixture
def tls_files(tmp_path):
    """Stand-in CA, certificate and key files (start-up checks only that they exist and what PEM they hold)."""
    paths = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for name, path in paths.items():
        path.write_text("-----BEGIN PRIVATE KEY-----\n" if name == "key" else "-----BEGIN CERTIFICATE-----\n")
    return {name: str(path) for name, path in paths.items()}


def sasl_ssl_environment(tls_files, **overrides):
    return {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "alice", "KAFKA_SASL_PASSWORD": PASSWORD, "KAFKA_SSL_CAFILE": tls_files["ca"],
            "KAFKA_SSL_CERTFILE": tls_files["cert"], "KAFKA_SSL_KEYFILE": tls_files["key"], **overrides}


def test_security_defaults_to_plaintext_with_hostname_verification():
    settings = Settings.from_env({})
    assert settings.security_protocol == "PLAINTEXT"
    assert settings.sasl_mechanism is settings.sasl_username is settings.sasl_password is None
    assert settings.ssl_cafile is settings.ssl_certfile is settings.ssl_keyfile is None
    assert settings.ssl_check_hostname is True


def test_security_settings_are_read_from_the_environment(tls_files):
    settings = Settings.from_env(sasl_ssl_environment(
        tls_files, KAFKA_SECURITY_PROTOCOL="sasl_ssl", KAFKA_SASL_MECHANISM="scram-sha-256",
        KAFKA_SSL_CHECK_HOSTNAME="false",
    ))
    assert settings.security_protocol == "SASL_SSL"  # any case in, Kafka's spelling out
    assert settings.sasl_mechanism == "SCRAM-SHA-256"
    assert (settings.sasl_username, settings.sasl_password) == ("alice", PASSWORD)
    assert (settings.ssl_cafile, settings.ssl_certfile, settings.ssl_keyfile) == (
        tls_files["ca"], tls_files["cert"], tls_files["key"])
    assert settings.ssl_check_hostname is False


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("1", True), ("YES", True), ("off", False),
                                               ("False", False), ("0", False)])
def test_hostname_verification_flag_spellings(raw, expected):
    assert Settings.from_env({"KAFKA_SSL_CHECK_HOSTNAME": raw}).ssl_check_hostname is expected


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_every_security_protocol_is_accepted(protocol, tls_files):
    environment = {"KAFKA_SECURITY_PROTOCOL": protocol}
    if protocol.startswith("SASL_"):
        environment.update(KAFKA_SASL_MECHANISM="PLAIN", KAFKA_SASL_USERNAME="alice", KAFKA_SASL_PASSWORD=PASSWORD)
    if protocol.endswith("SSL"):
        environment["KAFKA_SSL_CAFILE"] = tls_files["ca"]
    assert Settings.from_env(environment).security_protocol == protocol


def test_password_file_wins_and_is_read_once_at_start_up(tls_files, tmp_path):
    secret = tmp_path / "password"
    secret.write_text("from-the-file\n")  # as `echo` or a Kubernetes secret writes it
    settings = Settings.from_env(sasl_ssl_environment(tls_files, KAFKA_SASL_PASSWORD_FILE=str(secret)))
    assert settings.sasl_password == "from-the-file"
    secret.write_text("changed-later")
    assert settings.sasl_password == "from-the-file"


def test_password_file_alone_is_enough(tls_files, tmp_path):
    secret = tmp_path / "password"
    secret.write_text(PASSWORD)
    environment = sasl_ssl_environment(tls_files, KAFKA_SASL_PASSWORD_FILE=str(secret))
    del environment["KAFKA_SASL_PASSWORD"]
    assert Settings.from_env(environment).sasl_password == PASSWORD


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("KAFKA_SASL_MECHANISM", "GSSAPI"),
        ("KAFKA_SSL_CHECK_HOSTNAME", "maybe"),
        ("KAFKA_SSL_CAFILE", "/no/such/ca.pem"),
        ("KAFKA_SSL_CERTFILE", "/no/such/cert.pem"),
        ("KAFKA_SSL_KEYFILE", "/no/such/key.pem"),
        ("KAFKA_SASL_PASSWORD_FILE", "/no/such/password"),
    ],
)
def test_bad_security_values_name_the_variable(tls_files, name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(sasl_ssl_environment(tls_files, **{name: value}))


@pytest.mark.parametrize("missing", ["KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"])
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_protocols_need_mechanism_username_and_password(tls_files, protocol, missing):
    environment = sasl_ssl_environment(tls_files, KAFKA_SECURITY_PROTOCOL=protocol)
    if protocol == "SASL_PLAINTEXT":
        for name in ("KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"):
            del environment[name]
    del environment[missing]
    with pytest.raises(ConfigError, match=missing):
        Settings.from_env(environment)


@pytest.mark.parametrize("name", ["KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"])
@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
def test_sasl_settings_without_a_sasl_protocol_are_refused(protocol, name):
    # Credentials with a protocol that ignores them: most likely KAFKA_SECURITY_PROTOCOL was forgotten.
    value = {"KAFKA_SASL_MECHANISM": "PLAIN"}.get(name, "x")
    with pytest.raises(ConfigError, match=f"{name} is set but KAFKA_SECURITY_PROTOCOL is {protocol}"):
        Settings.from_env({"KAFKA_SECURITY_PROTOCOL": protocol, name: value})


@pytest.mark.parametrize("name", ["KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE"])
@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_tls_files_without_a_tls_protocol_are_refused(tls_files, protocol, name):
    environment = sasl_ssl_environment(tls_files, KAFKA_SECURITY_PROTOCOL=protocol)
    for other in {"KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"} - {name}:
        del environment[other]
    if protocol == "PLAINTEXT":
        for other in ("KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
            del environment[other]
    with pytest.raises(ConfigError, match=f"{name} is set but KAFKA_SECURITY_PROTOCOL is {protocol}"):
        Settings.from_env(environment)


def test_key_without_its_certificate_is_refused(tls_files):
    environment = sasl_ssl_environment(tls_files)
    del environment["KAFKA_SSL_CERTFILE"]
    with pytest.raises(ConfigError, match="KAFKA_SSL_KEYFILE is set without KAFKA_SSL_CERTFILE"):
        Settings.from_env(environment)


def test_empty_password_file_is_refused(tls_files, tmp_path):
    secret = tmp_path / "password"
    secret.write_text("\n")
    with pytest.raises(ConfigError, match="KAFKA_SASL_PASSWORD_FILE"):
        Settings.from_env(sasl_ssl_environment(tls_files, KAFKA_SASL_PASSWORD_FILE=str(secret)))


def test_password_is_never_in_repr_or_errors(tls_files, tmp_path):
    settings = Settings.from_env(sasl_ssl_environment(tls_files))
    assert settings.sasl_password == PASSWORD
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)
    assert "sasl_username='alice'" in repr(settings)  # the rest of the settings still show
    secret = tmp_path / "password"
    secret.write_text(PASSWORD)
    for environment in (
        sasl_ssl_environment(tls_files, KAFKA_SASL_USERNAME=""),  # the password is set, the username missing
        sasl_ssl_environment(tls_files, KAFKA_SECURITY_PROTOCOL="SSL"),  # the password is set, not used
        sasl_ssl_environment(tls_files, KAFKA_SASL_PASSWORD_FILE=str(tmp_path / "missing")),
    ):
        with pytest.raises(ConfigError) as raised:
            Settings.from_env(environment)
        assert PASSWORD not in str(raised.value)


# --- what kafka-python is given ---


def test_plaintext_passes_no_security_options():
    config = producer_config(Settings.from_env({}))
    assert config["security_protocol"] == "PLAINTEXT"
    assert not [key for key in config if key.startswith(("sasl_", "ssl_"))]


def test_sasl_ssl_passes_credentials_and_tls_files(tls_files):
    config = producer_config(Settings.from_env(sasl_ssl_environment(tls_files, KAFKA_SSL_CHECK_HOSTNAME="no")))
    assert {key: value for key, value in config.items() if key.startswith(("security_", "sasl_", "ssl_"))} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "alice",
        "sasl_plain_password": PASSWORD, "ssl_cafile": tls_files["ca"], "ssl_certfile": tls_files["cert"],
        "ssl_keyfile": tls_files["key"], "ssl_check_hostname": False, "ssl_password": _no_key_password,
    }


def test_an_encrypted_keys_password_reaches_kafka_python_and_is_never_shown(tls_files, tmp_path):
    settings = Settings.from_env(sasl_ssl_environment(tls_files, KAFKA_SSL_KEY_PASSWORD=KEY_PASSWORD))
    assert producer_config(settings)["ssl_password"] == KEY_PASSWORD
    assert KEY_PASSWORD not in repr(settings)
    password_file = tmp_path / "key.password"
    password_file.write_text(KEY_PASSWORD + "\n")
    from_file = Settings.from_env(sasl_ssl_environment(tls_files, KAFKA_SSL_KEY_PASSWORD_FILE=str(password_file)))
    assert from_file.ssl_key_password == KEY_PASSWORD


@pytest.mark.parametrize(("variable", "file"), [("KAFKA_SSL_CAFILE", "key"), ("KAFKA_SSL_CERTFILE", "key"),
                                                ("KAFKA_SSL_KEYFILE", "ca")])
def test_a_tls_file_that_holds_the_wrong_pem_is_refused_at_start(tls_files, variable, file):
    with pytest.raises(ConfigError, match=f"^{variable} names .* which holds no PEM"):
        Settings.from_env(sasl_ssl_environment(tls_files, **{variable: tls_files[file]}))


@pytest.mark.parametrize("overrides", [
    {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SSL_CAFILE": "", "KAFKA_SSL_CERTFILE": "",
     "KAFKA_SSL_KEYFILE": ""},  # no TLS at all
    {"KAFKA_SSL_CERTFILE": "", "KAFKA_SSL_KEYFILE": ""},  # no key to decrypt
])
def test_a_key_password_without_a_key_to_decrypt_is_refused(tls_files, overrides):
    with pytest.raises(ConfigError, match="KAFKA_SSL_KEY_PASSWORD") as raised:
        Settings.from_env(sasl_ssl_environment(tls_files, KAFKA_SSL_KEY_PASSWORD=KEY_PASSWORD, **overrides))
    assert KEY_PASSWORD not in str(raised.value)


def test_sasl_plaintext_passes_no_tls_options():
    config = producer_config(Settings.from_env({
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": "alice", "KAFKA_SASL_PASSWORD": PASSWORD,
    }))
    assert config["sasl_mechanism"] == "PLAIN"
    assert not [key for key in config if key.startswith("ssl_")]


def test_ssl_without_a_ca_file_leaves_the_system_cas():
    config = producer_config(Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SSL"}))
    assert config["ssl_check_hostname"] is True
    assert "ssl_cafile" not in config and not [key for key in config if key.startswith("sasl_")]
