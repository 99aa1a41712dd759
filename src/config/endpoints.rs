//! Where things are: listen addresses, and the keys whose empty value means "the
//! built-in one" (`broker.url`, `llm.base_url`, `agent.url`). Each is parsed once,
//! at load, into a type the rest of the program matches on, and written back as
//! the same string, so files and environment variables read as they always did.

use std::fmt;
use std::str::FromStr;

use lapin::uri::AMQPUri;
use reqwest::Url;
use serde::{Deserialize, Serialize};

/// Serde for a listen address key, written `"IP:PORT"` (such as `"127.0.0.1:8080"`).
pub mod socket_address {
    use std::net::SocketAddr;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        address: &SocketAddr,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(address)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|_| {
            D::Error::custom(format!(
                "{text:?} is not an IP:PORT address (such as \"127.0.0.1:8080\")"
            ))
        })
    }
}

/// `broker.url`: the engine that carries questions, answers and cancellations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum BrokerEngine {
    /// `""`: tokio channels inside this one process.
    #[default]
    Embedded,
    /// `amqp://…` or `amqps://…`: RabbitMQ, shared by any number of processes.
    RabbitMq(AmqpUrl),
}

impl FromStr for BrokerEngine {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Ok(Self::Embedded);
        }
        text.parse().map(Self::RabbitMq).map_err(|problem| {
            format!("must be empty (the embedded broker) or an amqp:// or amqps:// URL; {problem}")
        })
    }
}

/// A RabbitMQ URL, parsed as the AMQP client parses it. It usually carries a
/// password (`amqp://guest:guest@…`): `Debug` and `Display` show it as `***`.
#[derive(Clone, PartialEq)]
pub struct AmqpUrl {
    /// As configured, so it is written back unchanged.
    written: String,
    /// As configured, the password replaced.
    redacted: String,
    uri: AMQPUri,
}

impl AmqpUrl {
    /// What to connect to, password included.
    pub fn uri(&self) -> &AMQPUri {
        &self.uri
    }
}

impl FromStr for AmqpUrl {
    type Err = String;

    // The messages never quote the URL: it may hold a password.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if !(text.starts_with("amqp://") || text.starts_with("amqps://")) {
            return Err("the scheme is neither amqp nor amqps".into());
        }
        let invalid = |problem: String| format!("the URL is invalid ({problem})");
        let uri = text.parse::<AMQPUri>().map_err(invalid)?;
        let mut redacted = Url::parse(text).map_err(|problem| invalid(problem.to_string()))?;
        if redacted.password().is_some() {
            let _ = redacted.set_password(Some("***"));
        }
        Ok(Self {
            written: text.to_owned(),
            redacted: redacted.into(),
            uri,
        })
    }
}

impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AmqpUrl").field(&self.redacted).finish()
    }
}

/// `llm.base_url`: the model the knowledge agent asks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ModelEndpoint {
    /// `""`: the built-in demo model, started in-process.
    #[default]
    Demo,
    /// The `/v1` base URL of an OpenAI-compatible server.
    OpenAiCompatible(Url),
}

impl FromStr for ModelEndpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Ok(Self::Demo);
        }
        http_url(text).map(Self::OpenAiCompatible).map_err(|problem| {
            format!("must be empty (the built-in demo model) or an http(s):// URL; {text:?} {problem}")
        })
    }
}

/// `agent.url`: where the knowledge agent runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AgentLocation {
    /// `""`: inside each worker process.
    #[default]
    InProcess,
    /// A remote A2A agent.
    Remote(Url),
}

impl FromStr for AgentLocation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Ok(Self::InProcess);
        }
        http_url(text).map(Self::Remote).map_err(|problem| {
            format!("must be empty (the in-process agent) or an http(s):// URL; {text:?} {problem}")
        })
    }
}

/// `text` as an `http://` or `https://` URL, or what is wrong with it.
pub(super) fn http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|problem| format!("is not a URL ({problem})"))?;
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(url),
        "http" | "https" => Err("names no host".into()),
        scheme => Err(format!("has the scheme {scheme:?}")),
    }
}

// Serde reads each key as a string and writes it back as one.

impl TryFrom<String> for BrokerEngine {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<BrokerEngine> for String {
    fn from(engine: BrokerEngine) -> String {
        match engine {
            BrokerEngine::Embedded => String::new(),
            BrokerEngine::RabbitMq(url) => url.written,
        }
    }
}

impl TryFrom<String> for ModelEndpoint {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<ModelEndpoint> for String {
    fn from(endpoint: ModelEndpoint) -> String {
        match endpoint {
            ModelEndpoint::Demo => String::new(),
            ModelEndpoint::OpenAiCompatible(url) => url.into(),
        }
    }
}

impl TryFrom<String> for AgentLocation {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<AgentLocation> for String {
    fn from(location: AgentLocation) -> String {
        match location {
            AgentLocation::InProcess => String::new(),
            AgentLocation::Remote(url) => url.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RABBITMQ: &str = "amqp://guest:s3cret@127.0.0.1:5672/%2f";

    #[test]
    fn empty_means_the_built_in_one() {
        assert_eq!("".parse(), Ok(BrokerEngine::Embedded));
        assert_eq!("".parse(), Ok(ModelEndpoint::Demo));
        assert_eq!("".parse(), Ok(AgentLocation::InProcess));
    }

    #[test]
    fn an_amqp_url_is_rabbitmq_parsed_as_the_client_does() {
        let Ok(BrokerEngine::RabbitMq(url)) = RABBITMQ.parse() else {
            panic!("{RABBITMQ} is RabbitMQ");
        };
        assert_eq!(url.uri().authority.host, "127.0.0.1");
        assert_eq!(url.uri().authority.userinfo.password, "s3cret");
        assert_eq!(url.uri().vhost, "/");
        let secure: BrokerEngine = "amqps://rabbit.example/prod".parse().unwrap();
        assert!(matches!(secure, BrokerEngine::RabbitMq(url) if url.uri().authority.port == 5671));
    }

    #[test]
    fn a_broker_url_of_another_kind_is_refused_without_quoting_it() {
        let problem = "redis://user:hunter2@x"
            .parse::<BrokerEngine>()
            .unwrap_err();
        assert!(problem.contains("amqp://"), "{problem}");
        assert!(!problem.contains("hunter2"), "{problem}");
        let problem = "amqp://user:hunter2@x:99999"
            .parse::<BrokerEngine>()
            .unwrap_err();
        assert_eq!(
            problem,
            "must be empty (the embedded broker) or an amqp:// or amqps:// URL; \
             the URL is invalid (invalid port number)"
        );
        assert!(!problem.contains("hunter2"), "{problem}");
    }

    #[test]
    fn an_amqp_url_shows_no_password_but_is_written_back_whole() {
        let engine: BrokerEngine = RABBITMQ.parse().unwrap();
        let BrokerEngine::RabbitMq(url) = &engine else {
            unreachable!()
        };
        let shown = format!("{engine:?} {url} {url:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(url.to_string(), "amqp://guest:***@127.0.0.1:5672/%2f");
        assert_eq!(String::from(engine), RABBITMQ);
    }

    #[test]
    fn http_urls_name_a_model_or_a_remote_agent() {
        let endpoint: ModelEndpoint = "http://127.0.0.1:9000/v1".parse().unwrap();
        assert!(
            matches!(&endpoint, ModelEndpoint::OpenAiCompatible(url) if url.port() == Some(9000))
        );
        assert_eq!(String::from(endpoint), "http://127.0.0.1:9000/v1");
        let agent: AgentLocation = "https://agent.example".parse().unwrap();
        assert!(
            matches!(agent, AgentLocation::Remote(url) if url.host_str() == Some("agent.example"))
        );
    }

    #[test]
    fn other_urls_are_refused_with_the_value() {
        let problem = "ftp://x/v1".parse::<ModelEndpoint>().unwrap_err();
        assert_eq!(
            problem,
            "must be empty (the built-in demo model) or an http(s):// URL; \"ftp://x/v1\" has the scheme \"ftp\""
        );
        let problem = "localhost:9000".parse::<ModelEndpoint>().unwrap_err();
        assert!(problem.contains("\"localhost:9000\""), "{problem}");
        let problem = "127.0.0.1:9000".parse::<AgentLocation>().unwrap_err();
        assert!(
            problem.starts_with("must be empty (the in-process agent)"),
            "{problem}"
        );
        assert!(problem.contains("is not a URL"), "{problem}");
    }
}
