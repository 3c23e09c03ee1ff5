//! Translation between paho-mqtt and the broker layer: connect options,
//! URLs, messages and errors.

use std::time::Duration;

use bytes::Bytes;
use paho_mqtt as paho;

use super::{CONNECT_TIMEOUT, QOS_1};
use crate::broker::{BrokerError, Message, PublishError, UserProperties};
use crate::config::BrokerConfig;

/// Paho C's `MQTTASYNC_DISCONNECTED` return code (its `ffi` is private).
pub(super) const MQTTASYNC_DISCONNECTED: i32 = -3;

/// A paho message as the app sees it (user properties in wire order).
pub(super) fn convert(msg: &paho::Message) -> Message {
    Message {
        topic: msg.topic().to_string(),
        payload: Bytes::copy_from_slice(msg.payload()),
        props: UserProperties(msg.properties().user_iter().collect()),
        retained: msg.retained(),
    }
}

pub(super) fn build_message(
    topic: &str,
    payload: Bytes,
    props: &UserProperties,
    retain: bool,
) -> Result<paho::Message, PublishError> {
    let mut mqtt_props = paho::Properties::new();
    for (name, value) in props.iter() {
        // Paho's C strings cannot carry NUL (and it panics on one); MQTT
        // forbids U+0000 in strings anyway. Never echo the value: it may be a token.
        if name.contains('\0') || value.contains('\0') {
            return Err(PublishError::Other(format!(
                "user property `{}` contains a NUL character",
                name.replace('\0', "\\0")
            )));
        }
        mqtt_props
            .push_string_pair(paho::PropertyCode::UserProperty, name, value)
            .map_err(|e| PublishError::Other(format!("user property `{name}`: {e}")))?;
    }
    Ok(paho::MessageBuilder::new()
        .topic(topic)
        .payload(Vec::from(payload))
        .qos(QOS_1)
        .retained(retain)
        .properties(mqtt_props)
        .finalize())
}

/// `will`: the presence topic whose retained message the broker clears
/// when the session ends (see `crate::presence`).
pub(super) fn connect_options(
    cfg: &BrokerConfig,
    tls: bool,
    url: &str,
    will: Option<&str>,
) -> Result<paho::ConnectOptions, BrokerError> {
    let mut props = paho::Properties::new();
    props
        .push_u32(
            paho::PropertyCode::SessionExpiryInterval,
            cfg.session_expiry_seconds,
        )
        .map_err(|e| BrokerError::Config(format!("session_expiry_seconds: {e}")))?;
    let mut opts = paho::ConnectOptionsBuilder::new_v5();
    opts.clean_start(false)
        .properties(props)
        .keep_alive_interval(Duration::from_secs(u64::from(cfg.keep_alive_seconds)))
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(topic) = will {
        // Sent when the session ends, not when the connection drops: while
        // the session lasts the broker queues requests for this replica.
        let mut will_props = paho::Properties::new();
        will_props
            .push_u32(
                paho::PropertyCode::WillDelayInterval,
                cfg.session_expiry_seconds,
            )
            .map_err(|e| BrokerError::Config(format!("will delay: {e}")))?;
        opts.will_message(
            paho::MessageBuilder::new()
                .topic(topic)
                .payload(Vec::new())
                .qos(QOS_1)
                .retained(true)
                .properties(will_props)
                .finalize(),
        );
    }
    if let Some(user) = &cfg.broker_username {
        opts.user_name(user.as_str());
    }
    if let Some(password) = &cfg.broker_password {
        opts.password(password.as_str());
    }
    if tls {
        let mut ssl = paho::SslOptionsBuilder::new();
        if let Some(ca) = &cfg.trust_store_file {
            if !ca.is_file() {
                return Err(BrokerError::Config(format!(
                    "trust_store_file `{}` is not a readable file",
                    ca.display()
                )));
            }
            ssl.trust_store(ca).map_err(|e| {
                BrokerError::Config(format!("trust_store_file `{}`: {e}", ca.display()))
            })?;
        }
        let verify = !cfg.tls_insecure_skip_verify;
        if !verify {
            tracing::warn!(
                url,
                "TLS certificate verification is disabled (tls_insecure_skip_verify)"
            );
        }
        ssl.enable_server_cert_auth(verify).verify(verify);
        opts.ssl_options(ssl.finalize());
    } else if cfg.trust_store_file.is_some() || cfg.tls_insecure_skip_verify {
        tracing::warn!(url, "TLS settings are ignored for a non-TLS broker_url");
    }
    Ok(opts.finalize())
}

/// Maps our URL schemes to paho's (`tcp://`, `ssl://`) and adds the default
/// port. Returns the URI and whether it uses TLS.
pub(super) fn paho_uri(url: &str) -> Result<(String, bool), BrokerError> {
    let bad = |why: &str| {
        BrokerError::Config(format!(
            "broker_url `{url}`: {why} (expected tcp://, mqtt://, ssl:// or mqtts:// and host[:port])"
        ))
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let (scheme, tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "tcp" | "mqtt" => ("tcp", false, 1883),
        "ssl" | "mqtts" => ("ssl", true, 8883),
        _ => return Err(bad("unsupported scheme")),
    };
    let host_port = rest.strip_suffix('/').unwrap_or(rest);
    if host_port.is_empty() || host_port.contains(['/', '@', '?', '#']) {
        return Err(bad("expected only host and port after the scheme"));
    }
    // `[::1]:1883`: a port is a colon after the closing bracket.
    let after_host = host_port.rfind(']').map_or(host_port, |i| &host_port[i..]);
    let uri = if after_host.contains(':') {
        format!("{scheme}://{host_port}")
    } else {
        format!("{scheme}://{host_port}:{default_port}")
    };
    Ok((uri, tls))
}

/// Errors after which the operation may simply be tried again once
/// connected: the connection dropped, or the broker lost the session and
/// paho abandoned the in-flight operation.
pub(super) fn is_retryable(e: &paho::Error) -> bool {
    matches!(
        e,
        paho::Error::Disconnected | paho::Error::OperationIncomplete
    )
}

pub(super) fn publish_error(topic: &str, e: &paho::Error) -> PublishError {
    match e {
        paho::Error::ReasonCode(rc, props) => {
            let code = *rc as u8;
            if *rc == paho::ReasonCode::NotAuthorized {
                PublishError::NotAuthorized {
                    topic: topic.to_string(),
                }
            } else {
                PublishError::Refused {
                    topic: topic.to_string(),
                    code,
                    reason: describe_reason(*rc, props),
                }
            }
        }
        other => PublishError::Other(describe(other)),
    }
}

/// Like [`describe`], with hints for the failures paho reports vaguely.
pub(super) fn describe_connect(e: &paho::Error, tls: bool) -> String {
    match e {
        paho::Error::TcpTlsConnectFailure | paho::Error::TcpConnectCompletionFailure if tls => {
            format!(
                "{e} (broker down or unreachable, or its certificate not trusted: check trust_store_file and the host name)"
            )
        }
        paho::Error::TcpTlsConnectFailure | paho::Error::TcpConnectCompletionFailure => {
            format!("{e} (broker down or unreachable, or it expects TLS: try ssl://)")
        }
        other => describe(other),
    }
}

pub(super) fn describe(e: &paho::Error) -> String {
    match e {
        paho::Error::ReasonCode(rc, props) => describe_reason(*rc, props),
        paho::Error::Publish(rc, _) => paho::errors::error_message(*rc).to_string(),
        other => other.to_string(),
    }
}

pub(super) fn describe_reason(rc: paho::ReasonCode, props: &paho::Properties) -> String {
    let mut s = format!(
        "{} (reason code {:#04x})",
        rc.to_string().to_lowercase(),
        rc as u8
    );
    if let Some(text) = props.get_string(paho::PropertyCode::ReasonString) {
        s.push_str(": ");
        s.push_str(&text);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_map_to_paho_schemes_with_default_ports() {
        assert_eq!(
            paho_uri("mqtt://h").unwrap(),
            ("tcp://h:1883".into(), false)
        );
        assert_eq!(
            paho_uri("tcp://h:1884/").unwrap(),
            ("tcp://h:1884".into(), false)
        );
        assert_eq!(
            paho_uri("mqtts://h").unwrap(),
            ("ssl://h:8883".into(), true)
        );
        assert_eq!(paho_uri("ssl://h:9").unwrap(), ("ssl://h:9".into(), true));
        assert_eq!(
            paho_uri("tcp://[::1]").unwrap(),
            ("tcp://[::1]:1883".into(), false)
        );
        assert_eq!(
            paho_uri("tcp://[::1]:7").unwrap(),
            ("tcp://[::1]:7".into(), false)
        );
        for bad in [
            "h:1883",
            "http://h",
            "tcp://",
            "tcp://h/path",
            "tcp://u:p@h",
        ] {
            assert!(
                matches!(paho_uri(bad), Err(BrokerError::Config(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn puback_reason_codes_map_to_publish_errors() {
        let denied = paho::Error::from_reason_code(0x87, paho::Properties::new());
        assert!(matches!(
            publish_error("t", &denied),
            PublishError::NotAuthorized { topic } if topic == "t"
        ));
        let quota = paho::Error::from_reason_code(0x97, paho::Properties::new());
        match publish_error("t", &quota) {
            PublishError::Refused { code, reason, .. } => {
                assert_eq!(code, 0x97);
                assert!(reason.contains("0x97"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn messages_with_nul_in_properties_are_refused_without_echoing_values() {
        let props = UserProperties::new().with("authToken", "secret\0jwt");
        let err = build_message("t", Bytes::new(), &props, false).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("authToken"));
        assert!(!text.contains("secret"));
    }
}
