//! The bakkal server: tonic services over the store, health, reflection, request tracing.
//!
//! This is the transport layer. It validates requests at the edge, converts between protobuf
//! and domain types, maps every error to one status code (see [`status`]), and nothing else:
//! the rules live in `bakkal-domain`, the SQL in `bakkal-store`.

pub mod audit;
pub mod auth;
pub mod backup;
mod campaign_service;
pub mod config;
pub mod connections;
mod convert;
mod customer_service;
mod dispatcher;
pub mod limits;
mod loyalty_service;
mod loyalty_sweeper;
pub mod metrics;
mod offer_service;
mod page_token;
mod personal_data;
mod sales;
pub mod scheduler;
mod script_service;
mod segment_service;
pub mod server;
pub mod service_desk;
mod sinks;
pub mod status;
pub mod tls;
mod tracing_layer;

/// The generated protobuf types and gRPC clients and servers.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("bakkal.v1");

    /// The encoded file descriptor set of `proto/`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/bakkal_descriptor.bin"));
}
