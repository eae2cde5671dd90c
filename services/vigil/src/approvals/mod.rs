//! The approval service as it runs: the durable book of `vigil-approvals`
//! made live ([`service`]), the proxy's in-process and remote views of it ([`local`], [`remote`]),
//! the approvers' gRPC API ([`grpc`]) and command line ([`cli`]), webhooks
//! both ways ([`webhook`]), its config section ([`settings`]), and the
//! escaping of text approvers read ([`escape`]).

pub mod cli;
pub mod escape;
pub mod grpc;
pub mod local;
pub mod remote;
pub mod service;
pub mod settings;
pub mod webhook;
