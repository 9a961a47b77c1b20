//! Pure domain of the approval bridge: what Dataphin submits, what a ticket is, how its
//! approval nodes move, how rules decide, and how all of it is shown to people.
//! Nothing in this crate performs I/O; adapters and handlers live elsewhere.

pub mod bounds;
pub mod error;
pub mod facts;
pub mod status;

pub use error::ModelError;
pub use facts::{Facts, Period, Scenario};
pub use status::{DispatchStatus, NodeStatus, Relation, TicketStatus};

pub mod content;
pub mod render;
pub mod rules;
pub mod submission;
pub mod ticket;

pub use content::Content;
pub use render::FormField;
pub use submission::{ApproveNode, Submission, UserRef};
