//! The approval service as it runs: the durable book of `vigil-approvals`
//! made live ([`service`]), the proxy's in-process and remote views of it
//! ([`local`], [`remote`]), the approvers' gRPC API ([`grpc`]), webhooks
//! both ways ([`webhook`]), its config sections ([`settings`]), and the
//! escaping of text approvers read ([`escape`]). The `vigil` binary only
//! wires these (and its `approvals` command is a client of [`grpc`]).

pub mod escape;
pub mod grpc;
pub mod local;
pub mod remote;
pub mod service;
pub mod settings;
pub mod webhook;
