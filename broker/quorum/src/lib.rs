//! Sluice's metadata quorum (KRaft-like): topics, partitions, replica
//! assignments, leaders and epochs, ISR and broker registrations live in a
//! Raft-replicated log ([openraft]), carried over gRPC ([tonic]) on the
//! brokers' internal listener.
//!
//! - [`model`]: the metadata and the commands that change it;
//! - [`image`]: how a command changes the metadata (the state machine,
//!   pure);
//! - [`controller`], [`placement`]: the controller's decisions (fencing,
//!   leader and ISR changes, replica placement), pure;
//! - [`log_store`], [`state_machine`]: Raft storage on disk;
//! - [`network`], [`node`]: transport and a running member;
//! - [`election`]: elections after a pre-vote; [`voters`]: the voter set
//!   (KIP-853: described, changed, directory ids).

pub mod controller;
pub mod election;
pub mod image;
pub mod log_store;
pub mod member;
pub mod model;
pub mod network;
pub mod node;
pub mod placement;
pub mod reassign;
pub mod state_machine;
pub mod tls;
pub mod types;
pub mod voters;

/// Generated from `proto/quorum.proto`.
#[allow(clippy::all, missing_docs, unreachable_pub)]
pub mod pb {
    tonic::include_proto!("sluice.quorum.v1");
}

pub use image::{Command, MetadataImage, Outcome, Refusal};
pub use member::{Member, MemberConfig};
pub use node::{HeartbeatReply, QuorumConfig, QuorumError, QuorumNode};
