//! The Kafka wire protocol at the edge of the broker: frames, headers, the
//! table of APIs this broker serves, and response encoding. Message bodies
//! are the `kafka-protocol` crate's generated types.

pub mod api;
pub mod code;
pub mod codec;
pub mod frame;
pub mod splice;

pub use api::{SUPPORTED, Support, supported};
pub use codec::{Close, DecodedHeader, HeaderError, decode_body, decode_header, encode_response};
pub use frame::{FrameError, FrameReader, read_frame};
