//! Broker configuration: one typed struct, read from a properties file,
//! `SLUICE_*` environment variables and command-line flags.
//!
//! Every setting has one name in Kafka's dotted form (`log.retention.ms`), used
//! as is in the file, as `--log-retention-ms` on the command line and as
//! `SLUICE_LOG_RETENTION_MS` in the environment. Precedence: flag, then
//! environment, then file, then the default. An unknown or invalid setting is
//! an error that names it.

pub mod dynamic;
pub mod listeners;

pub use listeners::{Listener, Listeners, SecurityProtocol};

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, FromArgMatches, Parser};

use crate::error::{Error, Result};

/// Output format for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (the default on a terminal).
    Human,
    /// One JSON object per line.
    Json,
}

/// Command line of `sluice-broker`. Every setting is optional here; defaults
/// are applied after the file and environment are merged.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "sluice-broker",
    version,
    about = "Sluice: a Kafka-compatible broker",
    long_about = "Sluice: a Kafka-compatible broker.\n\nEvery setting can be given as a flag, \
                  as an environment variable SLUICE_<NAME> (dots as underscores, upper case), \
                  or in a properties file (--config) under its Kafka-style dotted name, \
                  e.g. log.retention.ms=3600000. Flags win over the environment, which wins over the file."
)]
pub struct Cli {
    /// Properties file with settings in `name=value` lines.
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,

    /// This broker's node id. [default: 1]
    #[arg(long, env = "SLUICE_NODE_ID", value_parser = clap::value_parser!(i32).range(0..))]
    pub node_id: Option<i32>,

    /// The Kafka listeners, `NAME://host:port,...` (a bare `host:port` is a PLAINTEXT listener; an empty host binds every interface). [default: PLAINTEXT://127.0.0.1:9092]
    #[arg(long, env = "SLUICE_LISTENERS")]
    pub listeners: Option<String>,

    /// Addresses given to clients in metadata, `NAME://host:port,...`, per listener. [default: each listener's bind address]
    #[arg(long, env = "SLUICE_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,

    /// Security protocol of each listener, `NAME:PROTOCOL,...` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL). [default: a listener named after a protocol has that protocol]
    #[arg(long, env = "SLUICE_LISTENER_SECURITY_PROTOCOL_MAP")]
    pub listener_security_protocol_map: Option<String>,

    /// The listener brokers replicate over (PLAINTEXT or SSL). [default: the only listener, or the one named PLAINTEXT]
    #[arg(long, env = "SLUICE_INTER_BROKER_LISTENER_NAME")]
    pub inter_broker_listener_name: Option<String>,

    /// Key store of the SSL and SASL_SSL listeners: a PEM file with the private key and the certificate chain, reloaded when it changes.
    #[arg(long, env = "SLUICE_SSL_KEYSTORE_LOCATION")]
    pub ssl_keystore_location: Option<PathBuf>,

    /// Format of the key store; only PEM. [default: PEM]
    #[arg(long, env = "SLUICE_SSL_KEYSTORE_TYPE")]
    pub ssl_keystore_type: Option<String>,

    /// PEM CA certificates that client certificates must chain to, reloaded when it changes.
    #[arg(long, env = "SLUICE_SSL_TRUSTSTORE_LOCATION")]
    pub ssl_truststore_location: Option<PathBuf>,

    /// Format of the trust store; only PEM. [default: PEM]
    #[arg(long, env = "SLUICE_SSL_TRUSTSTORE_TYPE")]
    pub ssl_truststore_type: Option<String>,

    /// Client certificates on TLS listeners: none, requested or required. [default: none]
    #[arg(long, env = "SLUICE_SSL_CLIENT_AUTH")]
    pub ssl_client_auth: Option<String>,

    /// `ssl.client.auth` of one listener, as Kafka's `listener.name.<listener>.ssl.client.auth` (in a file, or SLUICE_LISTENER_NAME_<LISTENER>_SSL_CLIENT_AUTH): LISTENER=none|requested|required, repeated.
    #[arg(long = "listener-ssl-client-auth", value_name = "LISTENER=MODE")]
    pub listener_ssl_client_auth: Option<Vec<String>>,

    /// How a client certificate's subject becomes a principal: DEFAULT and RULE:pattern/replacement/[LU], in order. [default: DEFAULT]
    #[arg(long, env = "SLUICE_SSL_PRINCIPAL_MAPPING_RULES")]
    pub ssl_principal_mapping_rules: Option<String>,

    /// SASL mechanisms of the SASL_PLAINTEXT and SASL_SSL listeners: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512. [default: SCRAM-SHA-256,SCRAM-SHA-512]
    #[arg(long, env = "SLUICE_SASL_ENABLED_MECHANISMS")]
    pub sasl_enabled_mechanisms: Option<String>,

    /// Users of SASL/PLAIN: a file of `user=password` lines, read at each login.
    #[arg(long, env = "SLUICE_SASL_PLAIN_USERS_FILE")]
    pub sasl_plain_users_file: Option<PathBuf>,

    /// Longest SASL session before the client must re-authenticate (KIP-368); 0: as long as the connection. [default: 0]
    #[arg(long, env = "SLUICE_CONNECTIONS_MAX_REAUTH_MS", value_parser = clap::value_parser!(i64).range(0..))]
    pub connections_max_reauth_ms: Option<i64>,

    /// How long the answer to a failed authentication is held back. [default: 100]
    #[arg(long, env = "SLUICE_CONNECTION_FAILED_AUTHENTICATION_DELAY_MS", value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub connection_failed_authentication_delay_ms: Option<u64>,

    /// The authorizer: org.apache.kafka.metadata.authorizer.StandardAuthorizer (or kafka.security.authorizer.AclAuthorizer) enforces ACLs; empty allows everything. [default: empty]
    #[arg(long, env = "SLUICE_AUTHORIZER_CLASS_NAME")]
    pub authorizer_class_name: Option<String>,

    /// Principals every ACL check allows, `User:admin;User:broker`.
    #[arg(long, env = "SLUICE_SUPER_USERS")]
    pub super_users: Option<String>,

    /// Allow a request on a resource that has no ACL at all. [default: false]
    #[arg(long, env = "SLUICE_ALLOW_EVERYONE_IF_NO_ACL_FOUND")]
    pub allow_everyone_if_no_acl_found: Option<bool>,

    /// Data directory. [default: ./sluice-data]
    #[arg(long, env = "SLUICE_LOG_DIRS")]
    pub log_dirs: Option<PathBuf>,

    /// Address of the Prometheus metrics and health HTTP endpoint. [default: 127.0.0.1:9464]
    #[arg(long, env = "SLUICE_METRICS_LISTENER")]
    pub metrics_listener: Option<SocketAddr>,

    /// Rack of this broker, reported in metadata.
    #[arg(long, env = "SLUICE_BROKER_RACK")]
    pub broker_rack: Option<String>,

    /// Log line format. [default: human]
    #[arg(long, env = "SLUICE_LOGGING_FORMAT", value_enum)]
    pub logging_format: Option<LogFormat>,

    /// Log filter, in `tracing` EnvFilter syntax. [default: info]
    #[arg(long, env = "SLUICE_LOGGING_LEVEL")]
    pub logging_level: Option<String>,

    /// Create a topic when a client asks for its metadata. [default: true]
    #[arg(long, env = "SLUICE_AUTO_CREATE_TOPICS_ENABLE")]
    pub auto_create_topics_enable: Option<bool>,

    /// Partitions of an auto-created topic, or of CreateTopics with -1. [default: 1]
    #[arg(long, env = "SLUICE_NUM_PARTITIONS", value_parser = clap::value_parser!(i32).range(1..=100_000))]
    pub num_partitions: Option<i32>,

    /// Replication factor used when a client asks for the default. [default: 1]
    #[arg(long, env = "SLUICE_DEFAULT_REPLICATION_FACTOR", value_parser = clap::value_parser!(i16).range(1..))]
    pub default_replication_factor: Option<i16>,

    /// Smallest in-sync replica set an acks=all write needs. [default: 1]
    #[arg(long, env = "SLUICE_MIN_INSYNC_REPLICAS", value_parser = clap::value_parser!(i32).range(1..))]
    pub min_insync_replicas: Option<i32>,

    /// Largest record batch accepted, in bytes. [default: 1048588]
    #[arg(long, env = "SLUICE_MESSAGE_MAX_BYTES", value_parser = clap::value_parser!(i32).range(64..))]
    pub message_max_bytes: Option<i32>,

    /// Size at which a log segment is rolled. [default: 1073741824]
    #[arg(long, env = "SLUICE_LOG_SEGMENT_BYTES", value_parser = clap::value_parser!(i64).range(1024..=(i32::MAX as i64)))]
    pub log_segment_bytes: Option<i64>,

    /// Age at which a log segment is rolled. [default: 604800000]
    #[arg(long, env = "SLUICE_LOG_ROLL_MS", value_parser = clap::value_parser!(i64).range(1..))]
    pub log_roll_ms: Option<i64>,

    /// Delete segments older than this; -1 keeps them forever. [default: 604800000]
    #[arg(long, env = "SLUICE_LOG_RETENTION_MS", value_parser = clap::value_parser!(i64).range(-1..))]
    pub log_retention_ms: Option<i64>,

    /// Delete old segments while the partition is larger than this; -1 means no limit. [default: -1]
    #[arg(long, env = "SLUICE_LOG_RETENTION_BYTES", value_parser = clap::value_parser!(i64).range(-1..))]
    pub log_retention_bytes: Option<i64>,

    /// How often retention is checked. [default: 300000]
    #[arg(long, env = "SLUICE_LOG_RETENTION_CHECK_INTERVAL_MS", value_parser = clap::value_parser!(i64).range(1..))]
    pub log_retention_check_interval_ms: Option<i64>,

    /// fsync after this many messages; the default leaves durability to replication and the page cache. [default: 9223372036854775807]
    #[arg(long, env = "SLUICE_LOG_FLUSH_INTERVAL_MESSAGES", value_parser = clap::value_parser!(i64).range(1..))]
    pub log_flush_interval_messages: Option<i64>,

    /// fsync when the oldest unflushed message is this old. [default: 9223372036854775807]
    #[arg(long, env = "SLUICE_LOG_FLUSH_INTERVAL_MS", value_parser = clap::value_parser!(i64).range(1..))]
    pub log_flush_interval_ms: Option<i64>,

    /// Bytes of log between two offset index entries. [default: 4096]
    #[arg(long, env = "SLUICE_LOG_INDEX_INTERVAL_BYTES", value_parser = clap::value_parser!(i32).range(1..))]
    pub log_index_interval_bytes: Option<i32>,

    /// Largest request frame accepted; a larger one closes the connection. [default: 104857600]
    #[arg(long, env = "SLUICE_SOCKET_REQUEST_MAX_BYTES", value_parser = clap::value_parser!(i32).range(1024..))]
    pub socket_request_max_bytes: Option<i32>,

    /// Most client connections served at once. [default: 10000]
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,

    /// Most bytes a single Fetch response carries. [default: 57671680]
    #[arg(long, env = "SLUICE_FETCH_MAX_BYTES", value_parser = clap::value_parser!(i32).range(1024..))]
    pub fetch_max_bytes: Option<i32>,

    /// How often the high-watermark and recovery-point checkpoints are written. [default: 5000]
    #[arg(long, env = "SLUICE_REPLICA_HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS", value_parser = clap::value_parser!(i64).range(1..))]
    pub replica_high_watermark_checkpoint_interval_ms: Option<i64>,

    /// Partitions of the internal `__consumer_offsets` topic (fixed once created). [default: 50]
    #[arg(long, env = "SLUICE_OFFSETS_TOPIC_NUM_PARTITIONS", value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub offsets_topic_num_partitions: Option<i32>,

    /// Partitions of the internal `__transaction_state` topic (fixed once created). [default: 50]
    #[arg(long, env = "SLUICE_TRANSACTION_STATE_LOG_NUM_PARTITIONS", value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub transaction_state_log_num_partitions: Option<i32>,

    /// Largest transaction.timeout.ms a transactional producer may ask for. [default: 900000]
    #[arg(long, env = "SLUICE_TRANSACTION_MAX_TIMEOUT_MS", value_parser = clap::value_parser!(i32).range(1..))]
    pub transaction_max_timeout_ms: Option<i32>,

    /// How often open transactions are checked against their timeout (and aborted past it). [default: 10000]
    #[arg(long, env = "SLUICE_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS", value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: Option<u64>,

    /// How long the first rebalance of a new group waits for more members. [default: 3000]
    #[arg(long, env = "SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS", value_parser = clap::value_parser!(u64).range(0..=300_000))]
    pub group_initial_rebalance_delay_ms: Option<u64>,

    /// Smallest session timeout a group member may ask for. [default: 6000]
    #[arg(long, env = "SLUICE_GROUP_MIN_SESSION_TIMEOUT_MS", value_parser = clap::value_parser!(i32).range(1..))]
    pub group_min_session_timeout_ms: Option<i32>,

    /// Largest session timeout a group member may ask for. [default: 1800000]
    #[arg(long, env = "SLUICE_GROUP_MAX_SESSION_TIMEOUT_MS", value_parser = clap::value_parser!(i32).range(1..))]
    pub group_max_session_timeout_ms: Option<i32>,

    /// Run the log cleaner for compacted topics. [default: true]
    #[arg(long, env = "SLUICE_LOG_CLEANER_ENABLE")]
    pub log_cleaner_enable: Option<bool>,

    /// Pause between cleaner passes when nothing was dirty enough. [default: 15000]
    #[arg(long, env = "SLUICE_LOG_CLEANER_BACKOFF_MS", value_parser = clap::value_parser!(u64).range(10..))]
    pub log_cleaner_backoff_ms: Option<u64>,

    /// Memory for the cleaner's key map, in bytes (24 bytes per key, as Kafka counts). [default: 33554432]
    #[arg(long, env = "SLUICE_LOG_CLEANER_DEDUPE_BUFFER_SIZE", value_parser = clap::value_parser!(u64).range(1024..))]
    pub log_cleaner_dedupe_buffer_size: Option<u64>,

    /// Most bytes per second the cleaner reads and writes; unset means no limit.
    #[arg(long, env = "SLUICE_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND", value_parser = clap::value_parser!(u64).range(1..))]
    pub log_cleaner_io_max_bytes_per_second: Option<u64>,

    /// Memory for fetch responses being read and sent, across all connections; a fetch that finds none free waits for the next round. [default: 67108864]
    #[arg(long, env = "SLUICE_FETCH_MEMORY_MAX_BYTES", value_parser = clap::value_parser!(u64).range(1 << 20..))]
    pub fetch_memory_max_bytes: Option<u64>,

    /// Time given to in-flight requests on SIGTERM before the broker exits. [default: 30000]
    #[arg(long, env = "SLUICE_SHUTDOWN_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub shutdown_timeout_ms: Option<u64>,

    /// The metadata quorum's voters, `id@host:port,...` (their internal listeners). Unset: this broker alone is the quorum (one voter), as a single Kafka node in combined mode.
    #[arg(long, env = "SLUICE_CONTROLLER_QUORUM_VOTERS")]
    pub controller_quorum_voters: Option<String>,

    /// Address the internal (quorum) listener binds. [default: with voters, the Kafka listener's address, port 9093; alone, a free loopback port]
    #[arg(long, env = "SLUICE_INTERNAL_LISTENER")]
    pub internal_listener: Option<SocketAddr>,

    /// Internal listener address other brokers dial. [default: the advertised host, the internal port]
    #[arg(long, env = "SLUICE_INTERNAL_ADVERTISED_LISTENER")]
    pub internal_advertised_listener: Option<String>,

    /// Local IP address this broker's connections to other brokers (quorum RPCs, replica fetches) come from, for hosts with several addresses. [default: chosen by the OS]
    #[arg(long, env = "SLUICE_INTERNAL_SOURCE_ADDRESS")]
    pub internal_source_address: Option<std::net::IpAddr>,

    /// Security of the internal (quorum) listener: PLAINTEXT, or SSL for mutual TLS with the key store (every member presents a certificate its trust store admits). [default: PLAINTEXT]
    #[arg(long, env = "SLUICE_INTERNAL_LISTENER_SECURITY_PROTOCOL")]
    pub internal_listener_security_protocol: Option<String>,

    /// PEM CAs the quorum's members' certificates must chain to, when narrower than ssl.truststore.location (which may admit clients' CAs: a client must never reach the quorum). [default: ssl.truststore.location]
    #[arg(long, env = "SLUICE_INTERNAL_LISTENER_SSL_TRUSTSTORE_LOCATION")]
    pub internal_listener_ssl_truststore_location: Option<PathBuf>,

    /// How often a broker heartbeats to the controller. [default: 100]
    #[arg(long, env = "SLUICE_BROKER_HEARTBEAT_INTERVAL_MS", value_parser = clap::value_parser!(u64).range(10..))]
    pub broker_heartbeat_interval_ms: Option<u64>,

    /// A broker silent this long is fenced and its leaderships move. [default: 1000]
    #[arg(long, env = "SLUICE_BROKER_SESSION_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(50..))]
    pub broker_session_timeout_ms: Option<u64>,

    /// How long quorum voters go without hearing from the quorum leader before they elect another (its lease); a voter that finds the leader gone stands as soon as it has run out, the others after 50-100 % more. [default: 600]
    #[arg(long, env = "SLUICE_CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(300..))]
    pub controller_quorum_election_timeout_ms: Option<u64>,

    /// A follower that has not caught up for this long leaves the ISR. [default: 10000]
    #[arg(long, env = "SLUICE_REPLICA_LAG_TIME_MAX_MS", value_parser = clap::value_parser!(u64).range(10..))]
    pub replica_lag_time_max_ms: Option<u64>,

    /// How long a follower's fetch waits at the leader for new records. [default: 500]
    #[arg(long, env = "SLUICE_REPLICA_FETCH_WAIT_MAX_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub replica_fetch_wait_max_ms: Option<u64>,
}

/// The broker's part in the metadata quorum. Every broker has one: a
/// broker started without voters is a one-voter quorum of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Voter node id -> internal `host:port`. Empty: this broker alone, at
    /// the address its internal listener is bound to.
    pub voters: BTreeMap<i32, String>,
    pub internal_listener: SocketAddr,
    /// Empty: the address the internal listener is bound to.
    pub internal_advertised: String,
    /// Where outbound broker-to-broker connections come from.
    pub source_address: Option<std::net::IpAddr>,
    /// `internal.listener.security.protocol=SSL`: the quorum over mutual
    /// TLS, with these settings (client certificates required, the trust
    /// store `internal.listener.ssl.truststore.location`).
    pub internal_ssl: Option<crate::security::SslConfig>,
    pub heartbeat_interval_ms: u64,
    pub session_timeout_ms: u64,
    /// `controller.quorum.election.timeout.ms`.
    pub election_timeout_ms: u64,
    pub replica_lag_time_max_ms: u64,
    pub replica_fetch_wait_max_ms: u64,
}

impl Default for ClusterConfig {
    /// Alone: a one-voter quorum on a free loopback port.
    fn default() -> Self {
        ClusterConfig {
            voters: BTreeMap::new(),
            internal_listener: SocketAddr::from(([127, 0, 0, 1], 0)),
            internal_advertised: String::new(),
            source_address: None,
            internal_ssl: None,
            heartbeat_interval_ms: 100,
            session_timeout_ms: 1000,
            election_timeout_ms: 600,
            replica_lag_time_max_ms: 10_000,
            replica_fetch_wait_max_ms: 500,
        }
    }
}

/// Why `controller.quorum.voters` cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VotersError {
    #[error("`{0}` is not id@host:port")]
    NotIdAtAddress(String),
    #[error("`{id}` in `{part}` is not a node id")]
    BadId { id: String, part: String },
    #[error("`{addr}` in `{part}` is not host:port")]
    BadAddress { addr: String, part: String },
    #[error("node {0} is listed twice")]
    Twice(i32),
    #[error("no voters listed")]
    Empty,
}

/// Parses `id@host:port,id@host:port`.
fn parse_voters(text: &str) -> std::result::Result<BTreeMap<i32, String>, VotersError> {
    let mut out = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('@')
            .ok_or_else(|| VotersError::NotIdAtAddress(part.to_string()))?;
        let id: i32 =
            id.trim()
                .parse()
                .ok()
                .filter(|i| *i >= 0)
                .ok_or_else(|| VotersError::BadId {
                    id: id.to_string(),
                    part: part.to_string(),
                })?;
        parse_host_port(addr.trim()).ok_or_else(|| VotersError::BadAddress {
            addr: addr.to_string(),
            part: part.to_string(),
        })?;
        if out.insert(id, addr.trim().to_string()).is_some() {
            return Err(VotersError::Twice(id));
        }
    }
    if out.is_empty() {
        return Err(VotersError::Empty);
    }
    Ok(out)
}

/// The effective broker configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub listeners: Listeners,
    pub ssl: crate::security::SslConfig,
    pub sasl: crate::security::SaslConfig,
    pub acl: crate::security::acl::AclConfig,
    pub data_dir: PathBuf,
    pub metrics_listener: SocketAddr,
    pub rack: Option<String>,
    pub logging_format: LogFormat,
    pub logging_level: String,
    pub auto_create_topics_enable: bool,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub min_insync_replicas: i32,
    pub message_max_bytes: i32,
    pub log_segment_bytes: i64,
    pub log_roll_ms: i64,
    pub log_retention_ms: i64,
    pub log_retention_bytes: i64,
    pub log_retention_check_interval_ms: i64,
    pub log_flush_interval_messages: i64,
    pub log_flush_interval_ms: i64,
    pub log_index_interval_bytes: i32,
    pub socket_request_max_bytes: i32,
    pub max_connections: u32,
    pub fetch_max_bytes: i32,
    pub checkpoint_interval_ms: i64,
    pub offsets_topic_num_partitions: i32,
    pub transaction_state_log_num_partitions: i32,
    pub transaction_max_timeout_ms: i32,
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: u64,
    pub group_initial_rebalance_delay_ms: u64,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    pub log_cleaner_enable: bool,
    pub log_cleaner_backoff_ms: u64,
    pub log_cleaner_dedupe_buffer_size: u64,
    pub log_cleaner_io_max_bytes_per_second: Option<u64>,
    pub fetch_memory_max_bytes: u64,
    pub shutdown_timeout_ms: u64,
    /// The broker's part in the metadata quorum.
    pub cluster: ClusterConfig,
    /// The topic-default settings given explicitly (flag, environment or
    /// file), by Kafka name: DescribeConfigs names them as
    /// STATIC_BROKER_CONFIG.
    pub explicit: std::collections::BTreeSet<&'static str>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self::resolve(Cli::default()).expect("defaults are valid")
    }
}

impl BrokerConfig {
    /// Reads flags, environment and the optional file, in that precedence.
    pub fn load() -> Result<Self> {
        Self::load_from(std::env::args_os(), std::env::vars())
    }

    /// Like [`load`](Self::load) with explicit arguments and environment.
    pub fn load_from<I, T>(args: I, env: impl IntoIterator<Item = (String, String)>) -> Result<Self>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let known: BTreeMap<String, String> = setting_names()
            .into_iter()
            .map(|(long, env)| (env, long))
            .collect();
        let env_pairs: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("SLUICE_"))
            .collect();
        for (key, _) in &env_pairs {
            if key.starts_with("SLUICE_")
                && !known.contains_key(key)
                && !key.starts_with("SLUICE_TEST_")
                && per_listener_env(key).is_none()
            {
                return Err(Error::config(key, "unknown environment setting"));
            }
        }
        let env_args: Vec<String> = std::iter::once("sluice-broker".to_string())
            .chain(env_pairs.iter().filter_map(|(k, v)| {
                known
                    .get(k)
                    .map(|long| format!("--{long}={v}"))
                    .or_else(|| per_listener_env(k).map(|l| per_listener_flag(&l, v)))
            }))
            .collect();
        let cli = parse_layer(args).map_err(|e| Error::config("command line", e.to_string()))?;
        let from_env =
            parse_layer(env_args).map_err(|e| Error::config("environment", e.to_string()))?;
        let mut merged = merge(cli, from_env);
        if let Some(path) = merged.config.clone() {
            merged = merge(merged, read_file(&path)?);
        }
        Self::resolve(merged)
    }

    fn resolve(c: Cli) -> Result<Self> {
        let listeners = Listeners::resolve(
            c.listeners.as_deref(),
            c.listener_security_protocol_map.as_deref(),
            c.advertised_listeners.as_deref(),
            c.inter_broker_listener_name.as_deref(),
        )?;
        for (setting, value) in [
            ("ssl.keystore.type", &c.ssl_keystore_type),
            ("ssl.truststore.type", &c.ssl_truststore_type),
        ] {
            if let Some(v) = value {
                if !v.trim().eq_ignore_ascii_case("PEM") {
                    return Err(Error::config(
                        setting,
                        format!("`{v}`: only PEM key and trust stores are read"),
                    ));
                }
            }
        }
        let client_auth = match &c.ssl_client_auth {
            Some(v) => crate::security::ClientAuth::parse(v).ok_or_else(|| {
                Error::config(
                    "ssl.client.auth",
                    format!("`{v}` is not none, requested or required"),
                )
            })?,
            None => crate::security::ClientAuth::None,
        };
        let mut listener_client_auth = BTreeMap::new();
        for entry in c.listener_ssl_client_auth.iter().flatten() {
            let setting = |l: &str| format!("listener.name.{}.ssl.client.auth", l.to_lowercase());
            let Some((name, v)) = entry.split_once('=') else {
                return Err(Error::config(
                    "listener-ssl-client-auth",
                    format!("`{entry}` is not LISTENER=none|requested|required"),
                ));
            };
            let name = name.trim().to_ascii_uppercase();
            let Some(listener) = listeners.get(&name) else {
                return Err(Error::config(
                    setting(&name),
                    format!(
                        "names no listener of `listeners` ({})",
                        listeners.bind_text()
                    ),
                ));
            };
            if !listener.protocol.tls() {
                return Err(Error::config(
                    setting(&name),
                    format!(
                        "listener {name} is {}, not SSL or SASL_SSL",
                        listener.protocol
                    ),
                ));
            }
            let auth = crate::security::ClientAuth::parse(v).ok_or_else(|| {
                Error::config(
                    setting(&name),
                    format!("`{v}` is not none, requested or required"),
                )
            })?;
            listener_client_auth.insert(name, auth);
        }
        let ssl = crate::security::SslConfig {
            keystore: c.ssl_keystore_location.clone(),
            truststore: c.ssl_truststore_location.clone(),
            client_auth,
            listener_client_auth,
            principal_mapping_rules: c
                .ssl_principal_mapping_rules
                .clone()
                .unwrap_or_else(|| "DEFAULT".into()),
        };
        crate::security::principal::PrincipalBuilder::parse(&ssl.principal_mapping_rules)?;
        if listeners.any_tls() && ssl.keystore.is_none() {
            return Err(Error::config(
                "ssl.keystore.location",
                "must be set for an SSL or SASL_SSL listener",
            ));
        }
        let mut sasl = crate::security::SaslConfig::default();
        if let Some(text) = &c.sasl_enabled_mechanisms {
            sasl.enabled = crate::security::SaslConfig::parse_mechanisms(text)?;
        }
        sasl.plain_users = c.sasl_plain_users_file.clone();
        sasl.max_reauth_ms = c.connections_max_reauth_ms.unwrap_or(0);
        if let Some(d) = c.connection_failed_authentication_delay_ms {
            sasl.failed_delay_ms = d;
        }
        if listeners.any_sasl()
            && sasl
                .enabled
                .contains(&crate::security::sasl::Mechanism::Plain)
            && sasl.plain_users.is_none()
        {
            return Err(Error::config(
                "sasl.plain.users.file",
                "must be set when sasl.enabled.mechanisms has PLAIN",
            ));
        }
        let acl = crate::security::acl::AclConfig {
            enabled: match c.authorizer_class_name.as_deref().map(str::trim) {
                None | Some("") => false,
                Some(name) if crate::security::acl::AUTHORIZERS.contains(&name) => true,
                Some(other) => {
                    return Err(Error::config(
                        "authorizer.class.name",
                        format!(
                            "`{other}` is not served; ACLs are enforced with {}",
                            crate::security::acl::AUTHORIZERS[0]
                        ),
                    ));
                }
            },
            super_users: crate::security::acl::AclConfig::parse_super_users(
                c.super_users.as_deref().unwrap_or(""),
            )
            .map_err(|e| Error::config("super.users", e))?,
            allow_if_no_acl: c.allow_everyone_if_no_acl_found.unwrap_or(false),
        };
        let explicit = [
            ("min.insync.replicas", c.min_insync_replicas.is_some()),
            ("message.max.bytes", c.message_max_bytes.is_some()),
            ("log.segment.bytes", c.log_segment_bytes.is_some()),
            ("log.roll.ms", c.log_roll_ms.is_some()),
            ("log.retention.ms", c.log_retention_ms.is_some()),
            ("log.retention.bytes", c.log_retention_bytes.is_some()),
            (
                "log.flush.interval.messages",
                c.log_flush_interval_messages.is_some(),
            ),
            ("log.flush.interval.ms", c.log_flush_interval_ms.is_some()),
            (
                "log.index.interval.bytes",
                c.log_index_interval_bytes.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        let cfg = BrokerConfig {
            explicit,
            node_id: c.node_id.unwrap_or(1),
            listeners,
            ssl,
            sasl,
            acl,
            data_dir: c.log_dirs.unwrap_or_else(|| PathBuf::from("sluice-data")),
            metrics_listener: c
                .metrics_listener
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9464))),
            rack: c.broker_rack,
            logging_format: c.logging_format.unwrap_or(LogFormat::Human),
            logging_level: c.logging_level.unwrap_or_else(|| "info".to_string()),
            auto_create_topics_enable: c.auto_create_topics_enable.unwrap_or(true),
            num_partitions: c.num_partitions.unwrap_or(1),
            default_replication_factor: c.default_replication_factor.unwrap_or(1),
            min_insync_replicas: c.min_insync_replicas.unwrap_or(1),
            message_max_bytes: c.message_max_bytes.unwrap_or(1_048_588),
            log_segment_bytes: c.log_segment_bytes.unwrap_or(1 << 30),
            log_roll_ms: c.log_roll_ms.unwrap_or(7 * 24 * 3600 * 1000),
            log_retention_ms: c.log_retention_ms.unwrap_or(7 * 24 * 3600 * 1000),
            log_retention_bytes: c.log_retention_bytes.unwrap_or(-1),
            log_retention_check_interval_ms: c.log_retention_check_interval_ms.unwrap_or(300_000),
            log_flush_interval_messages: c.log_flush_interval_messages.unwrap_or(i64::MAX),
            log_flush_interval_ms: c.log_flush_interval_ms.unwrap_or(i64::MAX),
            log_index_interval_bytes: c.log_index_interval_bytes.unwrap_or(4096),
            socket_request_max_bytes: c.socket_request_max_bytes.unwrap_or(100 * 1024 * 1024),
            max_connections: c.max_connections.unwrap_or(10_000),
            fetch_max_bytes: c.fetch_max_bytes.unwrap_or(55 * 1024 * 1024),
            checkpoint_interval_ms: c
                .replica_high_watermark_checkpoint_interval_ms
                .unwrap_or(5000),
            offsets_topic_num_partitions: c.offsets_topic_num_partitions.unwrap_or(50),
            transaction_state_log_num_partitions: c
                .transaction_state_log_num_partitions
                .unwrap_or(50),
            transaction_max_timeout_ms: c.transaction_max_timeout_ms.unwrap_or(900_000),
            transaction_abort_timed_out_transaction_cleanup_interval_ms: c
                .transaction_abort_timed_out_transaction_cleanup_interval_ms
                .unwrap_or(10_000),
            group_initial_rebalance_delay_ms: c.group_initial_rebalance_delay_ms.unwrap_or(3000),
            group_min_session_timeout_ms: c.group_min_session_timeout_ms.unwrap_or(6000),
            group_max_session_timeout_ms: c.group_max_session_timeout_ms.unwrap_or(1_800_000),
            log_cleaner_enable: c.log_cleaner_enable.unwrap_or(true),
            log_cleaner_backoff_ms: c.log_cleaner_backoff_ms.unwrap_or(15_000),
            log_cleaner_dedupe_buffer_size: c.log_cleaner_dedupe_buffer_size.unwrap_or(32 << 20),
            log_cleaner_io_max_bytes_per_second: c.log_cleaner_io_max_bytes_per_second,
            fetch_memory_max_bytes: c.fetch_memory_max_bytes.unwrap_or(64 << 20),
            shutdown_timeout_ms: c.shutdown_timeout_ms.unwrap_or(30_000),
            cluster: ClusterConfig::default(),
        };
        let mut cfg = cfg;
        let voters = match &c.controller_quorum_voters {
            Some(text) => parse_voters(text)
                .map_err(|e| Error::config("controller.quorum.voters", e.to_string()))?,
            None => BTreeMap::new(),
        };
        let internal_listener = c.internal_listener.unwrap_or_else(|| {
            // Alone, nobody dials the internal listener: a free loopback
            // port, so that a broker run without flags binds no second
            // well-known port and two of them never collide.
            if voters.is_empty() {
                ClusterConfig::default().internal_listener
            } else {
                SocketAddr::new(cfg.listeners.inter_broker().bind.ip(), 9093)
            }
        });
        let internal_advertised = match &c.internal_advertised_listener {
            Some(a) => {
                parse_host_port(a).ok_or_else(|| {
                    Error::config(
                        "internal.advertised.listener",
                        format!("`{a}` is not host:port"),
                    )
                })?;
                a.clone()
            }
            None if voters.is_empty() => String::new(),
            None => format!(
                "{}:{}",
                cfg.listeners.inter_broker().advertised_host,
                internal_listener.port()
            ),
        };
        let internal_ssl = match c
            .internal_listener_security_protocol
            .as_deref()
            .map(|p| p.trim().to_ascii_uppercase())
            .as_deref()
        {
            None | Some("PLAINTEXT") => None,
            Some("SSL") => {
                let truststore = c
                    .internal_listener_ssl_truststore_location
                    .clone()
                    .or_else(|| cfg.ssl.truststore.clone());
                for (setting, set) in [
                    ("ssl.keystore.location", cfg.ssl.keystore.is_some()),
                    ("ssl.truststore.location", truststore.is_some()),
                ] {
                    if !set {
                        return Err(Error::config(
                            setting,
                            "must be set for internal.listener.security.protocol=SSL (mutual TLS)",
                        ));
                    }
                }
                Some(crate::security::SslConfig {
                    truststore,
                    client_auth: crate::security::ClientAuth::Required,
                    listener_client_auth: BTreeMap::new(),
                    ..cfg.ssl.clone()
                })
            }
            Some(other) => {
                return Err(Error::config(
                    "internal.listener.security.protocol",
                    format!(
                        "`{other}` is not PLAINTEXT or SSL (the quorum listener takes no SASL)"
                    ),
                ));
            }
        };
        let heartbeat_interval_ms = c.broker_heartbeat_interval_ms.unwrap_or(100);
        let session_timeout_ms = c.broker_session_timeout_ms.unwrap_or(1000);
        if session_timeout_ms <= 2 * heartbeat_interval_ms {
            return Err(Error::config(
                "broker.session.timeout.ms",
                format!(
                    "{session_timeout_ms} must exceed two heartbeat intervals ({heartbeat_interval_ms} ms each)"
                ),
            ));
        }
        if let Some(addr) = voters.get(&cfg.node_id) {
            if addr != &internal_advertised {
                return Err(Error::config(
                    "controller.quorum.voters",
                    format!(
                        "lists node {} at {addr}, but this broker's internal listener is advertised as {internal_advertised}",
                        cfg.node_id
                    ),
                ));
            }
        }
        cfg.cluster = ClusterConfig {
            voters,
            internal_listener,
            internal_advertised,
            source_address: c.internal_source_address,
            internal_ssl,
            heartbeat_interval_ms,
            session_timeout_ms,
            election_timeout_ms: c.controller_quorum_election_timeout_ms.unwrap_or(600),
            replica_lag_time_max_ms: c.replica_lag_time_max_ms.unwrap_or(10_000),
            replica_fetch_wait_max_ms: c.replica_fetch_wait_max_ms.unwrap_or(500),
        };
        if (cfg.message_max_bytes as u64) > cfg.fetch_memory_max_bytes {
            return Err(Error::config(
                "fetch.memory.max.bytes",
                format!(
                    "{} is smaller than message.max.bytes ({}): the largest batch could never be served",
                    cfg.fetch_memory_max_bytes, cfg.message_max_bytes
                ),
            ));
        }
        if cfg.message_max_bytes > cfg.socket_request_max_bytes {
            return Err(Error::config(
                "message.max.bytes",
                format!(
                    "{} is larger than socket.request.max.bytes ({})",
                    cfg.message_max_bytes, cfg.socket_request_max_bytes
                ),
            ));
        }
        Ok(cfg)
    }

    /// A test configuration: ephemeral ports on loopback, the given data dir.
    pub fn for_tests(data_dir: &Path) -> Self {
        BrokerConfig {
            listeners: Listeners::plaintext(SocketAddr::from(([127, 0, 0, 1], 0))),
            metrics_listener: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_path_buf(),
            ..Self::default()
        }
    }
}

/// `(long flag name, environment variable)` for every setting.
fn setting_names() -> Vec<(String, String)> {
    Cli::command()
        .get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?.to_string();
            let env = a.get_env()?.to_string_lossy().into_owned();
            Some((long, env))
        })
        .collect()
}

use listeners::parse_host_port;

fn path_text(p: Option<&Path>) -> String {
    p.map(|p| p.display().to_string()).unwrap_or_default()
}

/// The listener of Kafka's per-listener `listener.name.<listener>.ssl.client.auth`
/// (the one per-listener setting served; any other is an unknown setting).
fn per_listener_key(key: &str) -> Option<String> {
    let name = key
        .strip_prefix("listener.name.")?
        .strip_suffix(".ssl.client.auth")?;
    (!name.is_empty() && !name.contains('.')).then(|| name.to_ascii_uppercase())
}

/// The same as `SLUICE_LISTENER_NAME_<LISTENER>_SSL_CLIENT_AUTH`.
fn per_listener_env(key: &str) -> Option<String> {
    let name = key
        .strip_prefix("SLUICE_LISTENER_NAME_")?
        .strip_suffix("_SSL_CLIENT_AUTH")?;
    (!name.is_empty()).then(|| name.to_ascii_uppercase())
}

fn per_listener_flag(listener: &str, value: &str) -> String {
    format!("--listener-ssl-client-auth={listener}={value}")
}

/// Reads a properties file: `name=value` lines, `#` or `!` comments.
fn read_file(path: &Path) -> Result<Cli> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let known: Vec<String> = setting_names().into_iter().map(|(l, _)| l).collect();
    let mut args = vec!["sluice-broker".to_string()];
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((key, value)) = line.split_once('=').or_else(|| line.split_once(':')) else {
            return Err(Error::config(
                format!("{}:{}", path.display(), n + 1),
                format!("expected `name=value`, found `{line}`"),
            ));
        };
        let key = key.trim();
        if let Some(listener) = per_listener_key(key) {
            args.push(per_listener_flag(&listener, value.trim()));
            continue;
        }
        let flag = key.replace('.', "-");
        if flag == "config" || !known.contains(&flag) {
            return Err(Error::config(
                key,
                format!("unknown setting in {}", path.display()),
            ));
        }
        args.push(format!("--{flag}={}", value.trim()));
    }
    parse_layer(args).map_err(|e| Error::config(format!("file {}", path.display()), e.to_string()))
}

/// Parses one layer of settings (command line, environment or file) with
/// clap's own environment lookup off, so the layers merge explicitly.
fn parse_layer<I, T>(args: I) -> std::result::Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cmd = Cli::command().mut_args(|a| a.env(None::<&str>));
    let matches = match cmd.try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                // Help lists the environment names too.
                let _ = Cli::command().print_long_help();
                std::process::exit(0)
            }
            _ => return Err(e),
        },
    };
    Cli::from_arg_matches(&matches)
}

/// Fills every unset value of `over` from `under`.
fn merge(over: Cli, under: Cli) -> Cli {
    macro_rules! pick {
        ($($f:ident),* $(,)?) => { Cli { $($f: over.$f.or(under.$f)),* } };
    }
    pick!(
        config,
        node_id,
        listeners,
        advertised_listeners,
        listener_security_protocol_map,
        inter_broker_listener_name,
        ssl_keystore_location,
        ssl_keystore_type,
        ssl_truststore_location,
        ssl_truststore_type,
        ssl_client_auth,
        listener_ssl_client_auth,
        ssl_principal_mapping_rules,
        sasl_enabled_mechanisms,
        sasl_plain_users_file,
        connections_max_reauth_ms,
        connection_failed_authentication_delay_ms,
        authorizer_class_name,
        super_users,
        allow_everyone_if_no_acl_found,
        log_dirs,
        metrics_listener,
        broker_rack,
        logging_format,
        logging_level,
        auto_create_topics_enable,
        num_partitions,
        default_replication_factor,
        min_insync_replicas,
        message_max_bytes,
        log_segment_bytes,
        log_roll_ms,
        log_retention_ms,
        log_retention_bytes,
        log_retention_check_interval_ms,
        log_flush_interval_messages,
        log_flush_interval_ms,
        log_index_interval_bytes,
        socket_request_max_bytes,
        max_connections,
        fetch_max_bytes,
        replica_high_watermark_checkpoint_interval_ms,
        offsets_topic_num_partitions,
        transaction_state_log_num_partitions,
        transaction_max_timeout_ms,
        transaction_abort_timed_out_transaction_cleanup_interval_ms,
        group_initial_rebalance_delay_ms,
        group_min_session_timeout_ms,
        group_max_session_timeout_ms,
        log_cleaner_enable,
        log_cleaner_backoff_ms,
        log_cleaner_dedupe_buffer_size,
        log_cleaner_io_max_bytes_per_second,
        fetch_memory_max_bytes,
        shutdown_timeout_ms,
        controller_quorum_voters,
        internal_listener,
        internal_advertised_listener,
        internal_source_address,
        internal_listener_security_protocol,
        internal_listener_ssl_truststore_location,
        broker_heartbeat_interval_ms,
        broker_session_timeout_ms,
        controller_quorum_election_timeout_ms,
        replica_lag_time_max_ms,
        replica_fetch_wait_max_ms,
    )
}

impl fmt::Display for BrokerConfig {
    /// One `name = value` line per setting, as printed at startup. No setting
    /// is secret yet; SASL credentials will be redacted here when they exist.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: [(&str, String); 60] = [
            ("node.id", self.node_id.to_string()),
            ("listeners", self.listeners.bind_text()),
            ("advertised.listeners", self.listeners.advertised_text()),
            ("listener.security.protocol.map", self.listeners.map_text()),
            (
                "inter.broker.listener.name",
                self.listeners.inter_broker.clone(),
            ),
            (
                "ssl.keystore.location",
                path_text(self.ssl.keystore.as_deref()),
            ),
            (
                "ssl.truststore.location",
                path_text(self.ssl.truststore.as_deref()),
            ),
            ("ssl.client.auth", self.ssl.client_auth.name().to_string()),
            (
                "ssl.principal.mapping.rules",
                self.ssl.principal_mapping_rules.clone(),
            ),
            ("sasl.enabled.mechanisms", self.sasl.mechanisms_text()),
            (
                "sasl.plain.users.file",
                path_text(self.sasl.plain_users.as_deref()),
            ),
            (
                "connections.max.reauth.ms",
                self.sasl.max_reauth_ms.to_string(),
            ),
            (
                "connection.failed.authentication.delay.ms",
                self.sasl.failed_delay_ms.to_string(),
            ),
            (
                "authorizer.class.name",
                if self.acl.enabled {
                    crate::security::acl::AUTHORIZERS[0].to_string()
                } else {
                    String::new()
                },
            ),
            (
                "super.users",
                self.acl
                    .super_users
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(";"),
            ),
            (
                "allow.everyone.if.no.acl.found",
                self.acl.allow_if_no_acl.to_string(),
            ),
            ("log.dirs", self.data_dir.display().to_string()),
            ("metrics.listener", self.metrics_listener.to_string()),
            ("broker.rack", self.rack.clone().unwrap_or_default()),
            (
                "logging.format",
                format!("{:?}", self.logging_format).to_lowercase(),
            ),
            ("logging.level", self.logging_level.clone()),
            (
                "auto.create.topics.enable",
                self.auto_create_topics_enable.to_string(),
            ),
            ("num.partitions", self.num_partitions.to_string()),
            (
                "default.replication.factor",
                self.default_replication_factor.to_string(),
            ),
            ("min.insync.replicas", self.min_insync_replicas.to_string()),
            ("message.max.bytes", self.message_max_bytes.to_string()),
            ("log.segment.bytes", self.log_segment_bytes.to_string()),
            ("log.roll.ms", self.log_roll_ms.to_string()),
            ("log.retention.ms", self.log_retention_ms.to_string()),
            ("log.retention.bytes", self.log_retention_bytes.to_string()),
            (
                "log.retention.check.interval.ms",
                self.log_retention_check_interval_ms.to_string(),
            ),
            (
                "log.flush.interval.messages",
                self.log_flush_interval_messages.to_string(),
            ),
            (
                "log.flush.interval.ms",
                self.log_flush_interval_ms.to_string(),
            ),
            (
                "log.index.interval.bytes",
                self.log_index_interval_bytes.to_string(),
            ),
            (
                "socket.request.max.bytes",
                self.socket_request_max_bytes.to_string(),
            ),
            ("max.connections", self.max_connections.to_string()),
            ("fetch.max.bytes", self.fetch_max_bytes.to_string()),
            (
                "replica.high.watermark.checkpoint.interval.ms",
                self.checkpoint_interval_ms.to_string(),
            ),
            (
                "offsets.topic.num.partitions",
                self.offsets_topic_num_partitions.to_string(),
            ),
            (
                "transaction.state.log.num.partitions",
                self.transaction_state_log_num_partitions.to_string(),
            ),
            (
                "transaction.max.timeout.ms",
                self.transaction_max_timeout_ms.to_string(),
            ),
            (
                "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                self.transaction_abort_timed_out_transaction_cleanup_interval_ms
                    .to_string(),
            ),
            (
                "group.initial.rebalance.delay.ms",
                self.group_initial_rebalance_delay_ms.to_string(),
            ),
            (
                "group.min.session.timeout.ms",
                self.group_min_session_timeout_ms.to_string(),
            ),
            (
                "group.max.session.timeout.ms",
                self.group_max_session_timeout_ms.to_string(),
            ),
            ("log.cleaner.enable", self.log_cleaner_enable.to_string()),
            (
                "log.cleaner.backoff.ms",
                self.log_cleaner_backoff_ms.to_string(),
            ),
            (
                "log.cleaner.dedupe.buffer.size",
                self.log_cleaner_dedupe_buffer_size.to_string(),
            ),
            (
                "log.cleaner.io.max.bytes.per.second",
                self.log_cleaner_io_max_bytes_per_second
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
            ),
            (
                "fetch.memory.max.bytes",
                self.fetch_memory_max_bytes.to_string(),
            ),
            ("shutdown.timeout.ms", self.shutdown_timeout_ms.to_string()),
            (
                "controller.quorum.voters",
                self.cluster
                    .voters
                    .iter()
                    .map(|(id, a)| format!("{id}@{a}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "internal.listener",
                self.cluster.internal_listener.to_string(),
            ),
            (
                "internal.advertised.listener",
                self.cluster.internal_advertised.clone(),
            ),
            (
                "internal.source.address",
                self.cluster
                    .source_address
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
            ),
            (
                "internal.listener.security.protocol",
                if self.cluster.internal_ssl.is_some() {
                    "SSL"
                } else {
                    "PLAINTEXT"
                }
                .into(),
            ),
            (
                "broker.heartbeat.interval.ms",
                self.cluster.heartbeat_interval_ms.to_string(),
            ),
            (
                "broker.session.timeout.ms",
                self.cluster.session_timeout_ms.to_string(),
            ),
            (
                "controller.quorum.election.timeout.ms",
                self.cluster.election_timeout_ms.to_string(),
            ),
            ("version", env!("CARGO_PKG_VERSION").to_string()),
        ];
        for (k, v) in rows {
            writeln!(f, "  {k} = {v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<BrokerConfig> {
        let mut a = vec!["sluice-broker"];
        a.extend_from_slice(args);
        BrokerConfig::load_from(a, env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn cluster_settings_parse_and_bad_ones_are_named() {
        let c = load(&[], &[]).expect("defaults");
        assert!(c.cluster.voters.is_empty(), "alone without voters");
        assert_eq!(c.cluster.internal_listener.to_string(), "127.0.0.1:0");
        let c = load(
            &[
                "--node-id",
                "1",
                "--internal-listener",
                "127.0.0.1:9193",
                "--controller-quorum-voters",
                "0@127.0.0.1:9093, 1@127.0.0.1:9193,2@127.0.0.1:9293",
            ],
            &[],
        )
        .expect("cluster");
        let cc = c.cluster;
        assert_eq!(cc.voters.len(), 3);
        assert_eq!(cc.internal_advertised, "127.0.0.1:9193");
        assert_eq!(
            (cc.heartbeat_interval_ms, cc.session_timeout_ms),
            (100, 1000)
        );
        for (args, needle) in [
            (
                vec!["--controller-quorum-voters", "0-127.0.0.1:9093"],
                "id@host:port",
            ),
            (
                vec!["--controller-quorum-voters", "x@127.0.0.1:9093"],
                "not a node id",
            ),
            (
                vec!["--controller-quorum-voters", "0@nohost"],
                "not host:port",
            ),
            (
                vec!["--controller-quorum-voters", "0@a:1,0@b:2"],
                "listed twice",
            ),
            (
                vec![
                    "--controller-quorum-voters",
                    "1@127.0.0.1:7777",
                    "--internal-listener",
                    "127.0.0.1:9093",
                ],
                "advertised as 127.0.0.1:9093",
            ),
            (
                vec![
                    "--controller-quorum-voters",
                    "0@127.0.0.1:9093",
                    "--broker-session-timeout-ms",
                    "150",
                ],
                "two heartbeat intervals",
            ),
        ] {
            let e = load(&args, &[]).expect_err("refused").to_string();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn defaults_need_no_flags() {
        let c = load(&[], &[]).expect("defaults");
        assert_eq!(c.listeners.first().bind.to_string(), "127.0.0.1:9092");
        assert_eq!(c.listeners.first().name, "PLAINTEXT");
        assert_eq!(c.node_id, 1);
        assert_eq!(c.data_dir, PathBuf::from("sluice-data"));
        assert_eq!(c.metrics_listener.port(), 9464);
    }

    #[test]
    fn a_listener_has_its_own_ssl_client_auth_from_the_environment() {
        let listeners = "PLAINTEXT://127.0.0.1:0,TLS://127.0.0.1:0,REPLICATION://127.0.0.1:0";
        let map = "PLAINTEXT:PLAINTEXT,TLS:SSL,REPLICATION:SSL";
        let c = load(
            &[
                "--listeners",
                listeners,
                "--listener-security-protocol-map",
                map,
                "--ssl-keystore-location",
                "/k.pem",
                "--ssl-client-auth",
                "requested",
            ],
            &[(
                "SLUICE_LISTENER_NAME_REPLICATION_SSL_CLIENT_AUTH",
                "required",
            )],
        )
        .expect("per-listener client auth");
        use crate::security::ClientAuth;
        assert_eq!(c.ssl.client_auth_of("REPLICATION"), ClientAuth::Required);
        assert_eq!(c.ssl.client_auth_of("TLS"), ClientAuth::Requested);
        let e = load(
            &[
                "--listeners",
                listeners,
                "--listener-security-protocol-map",
                map,
            ],
            &[("SLUICE_LISTENER_NAME_NOPE_SSL_CLIENT_AUTH", "required")],
        )
        .expect_err("no such listener")
        .to_string();
        assert!(e.contains("listener.name.nope.ssl.client.auth"), "{e}");
    }

    #[test]
    fn unknown_env_setting_is_named() {
        let e = load(&[], &[("SLUICE_LOG_RETENTON_MS", "5")]).expect_err("must be refused");
        assert!(e.to_string().contains("SLUICE_LOG_RETENTON_MS"), "{e}");
    }

    #[test]
    fn invalid_flag_value_is_named() {
        let e = load(&["--num-partitions", "0"], &[]).expect_err("must be refused");
        assert!(e.to_string().contains("num-partitions"), "{e}");
    }

    #[test]
    fn file_then_env_then_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.properties");
        std::fs::write(
            &path,
            "# comment\nnum.partitions=3\nlog.retention.ms = 1000\nnode.id=7\n",
        )
        .expect("write");
        let p = path.to_str().expect("utf8");
        let c = load(
            &["--config", p, "--node-id", "9"],
            &[("SLUICE_LOG_RETENTION_MS", "2000")],
        )
        .expect("load");
        assert_eq!(c.num_partitions, 3);
        assert_eq!(c.log_retention_ms, 2000);
        assert_eq!(c.node_id, 9);
    }

    #[test]
    fn unknown_file_setting_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.properties");
        std::fs::write(&path, "log.retenton.ms=5\n").expect("write");
        let e =
            load(&["--config", path.to_str().expect("utf8")], &[]).expect_err("must be refused");
        assert!(e.to_string().contains("log.retenton.ms"), "{e}");
    }

    #[test]
    fn wildcard_listener_needs_advertised() {
        let e = load(&["--listeners", "0.0.0.0:9092"], &[]).expect_err("must be refused");
        assert!(e.to_string().contains("advertised.listeners"), "{e}");
        let c = load(
            &[
                "--listeners",
                "PLAINTEXT://0.0.0.0:9092",
                "--advertised-listeners",
                "PLAINTEXT://kafka-0.kafka:9092",
            ],
            &[],
        )
        .expect("ok");
        assert_eq!(c.listeners.first().advertised_host, "kafka-0.kafka");
    }
}
