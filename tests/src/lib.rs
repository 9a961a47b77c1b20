//! Support for the end-to-end tests: real HTTP stand-ins of the systems around the bridge
//! (DingTalk, Dataphin, a company BPM; the `sandbox` crate, shared with `bridge sandbox`), all on
//! 127.0.0.1, and a DynamoDB-compatible server.

pub use sandbox::{fake_bpm, fake_dataphin, fake_dingtalk};
pub mod fault_proxy;
pub mod harness;
