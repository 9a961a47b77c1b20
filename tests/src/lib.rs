//! Support for the end-to-end tests: real HTTP fakes of the systems around the bridge
//! (DingTalk, Dataphin, a company BPM), all on 127.0.0.1, and a DynamoDB-compatible server.

pub mod fake_bpm;
pub mod fake_dataphin;
pub mod fake_dingtalk;
pub mod harness;
