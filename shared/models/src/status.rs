//! Statuses and their four vocabularies (SPEC section 1), in one place.

use serde::{Deserialize, Serialize};

/// Canonical ticket status, as stored. Only `Pending` may change; the rest are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TicketStatus {
    Pending,
    Approved,
    Rejected,
    Withdrawn,
    Expired,
}

impl TicketStatus {
    pub const ALL: [TicketStatus; 5] = [
        TicketStatus::Pending,
        TicketStatus::Approved,
        TicketStatus::Rejected,
        TicketStatus::Withdrawn,
        TicketStatus::Expired,
    ];

    /// Canonical name; also the Dataphin callback `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Pending => "PENDING",
            TicketStatus::Approved => "APPROVED",
            TicketStatus::Rejected => "REJECTED",
            TicketStatus::Withdrawn => "WITHDRAWN",
            TicketStatus::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The Dataphin callback vocabulary is the canonical one.
    pub fn dataphin_status(self) -> &'static str {
        self.as_str()
    }

    /// The list API vocabulary (seed 001, DataArts).
    pub fn list_status(self) -> &'static str {
        match self {
            TicketStatus::Pending => "WAITING_APPROVE",
            TicketStatus::Approved => "APPROVED",
            TicketStatus::Rejected | TicketStatus::Expired => "REJECT",
            TicketStatus::Withdrawn => "REVOKE",
        }
    }

    /// The canonical statuses a list API status stands for (`REJECT` covers two).
    pub fn from_list_status(s: &str) -> Option<&'static [TicketStatus]> {
        match s {
            "WAITING_APPROVE" => Some(&[TicketStatus::Pending]),
            "APPROVED" => Some(&[TicketStatus::Approved]),
            "REJECT" => Some(&[TicketStatus::Rejected, TicketStatus::Expired]),
            "REVOKE" => Some(&[TicketStatus::Withdrawn]),
            _ => None,
        }
    }

    /// The detail vocabulary (seed 002, DMS `WorkflowInsCode`).
    pub fn workflow_ins_code(self) -> &'static str {
        match self {
            TicketStatus::Pending => "AUDITING",
            TicketStatus::Approved => "APPROVED",
            TicketStatus::Rejected | TicketStatus::Expired => "REJECT",
            TicketStatus::Withdrawn => "CANCEL",
        }
    }

    pub fn is_final(self) -> bool {
        self != TicketStatus::Pending
    }

    /// The only transitions there are: out of `Pending`, once.
    pub fn can_become(self, next: TicketStatus) -> bool {
        self == TicketStatus::Pending && next != TicketStatus::Pending
    }
}

/// Status of one approval node (seed 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeStatus {
    Pending,
    Approved,
    Rejected,
    Delegated,
    Transferred,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Pending => "PENDING",
            NodeStatus::Approved => "APPROVED",
            NodeStatus::Rejected => "REJECTED",
            NodeStatus::Delegated => "DELEGATED",
            NodeStatus::Transferred => "TRANSFERRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            NodeStatus::Pending,
            NodeStatus::Approved,
            NodeStatus::Rejected,
            NodeStatus::Delegated,
            NodeStatus::Transferred,
        ]
        .into_iter()
        .find(|n| n.as_str() == s)
    }

    /// A decided node never changes again.
    pub fn is_decided(self) -> bool {
        matches!(self, NodeStatus::Approved | NodeStatus::Rejected)
    }

    /// The node's state as a list/detail code (seed 002 `workflow_ins_code` per node).
    pub fn workflow_ins_code(self) -> &'static str {
        match self {
            NodeStatus::Approved => "APPROVED",
            NodeStatus::Rejected => "REJECT",
            _ => "AUDITING",
        }
    }
}

/// How the approvers of a node decide together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Relation {
    /// Any one approver decides.
    Or,
    /// All must approve; one rejection rejects.
    And,
}

impl Relation {
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Or => "or",
            Relation::And => "and",
        }
    }

    /// Dataphin's `approveOperator` (`OR`/`AND`, any case); anything else is refused by the caller.
    pub fn from_dataphin(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "OR" => Some(Relation::Or),
            "AND" => Some(Relation::And),
            _ => None,
        }
    }

    /// The rules document spells relations in lower case (`or`/`and`), any case accepted.
    pub fn parse(s: &str) -> Option<Self> {
        Self::from_dataphin(s)
    }
}

/// Seed 001 `approval_dispatch_status`: absent until the backend was tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DispatchStatus {
    /// `0`: forwarded to the backend.
    Forwarded,
    /// `1`: forwarding failed; the ticket carries the error message.
    Failed,
}

impl DispatchStatus {
    pub fn code(self) -> &'static str {
        match self {
            DispatchStatus::Forwarded => "0",
            DispatchStatus::Failed => "1",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_follow_the_spec_table() {
        let rows = [
            (
                TicketStatus::Pending,
                "PENDING",
                "WAITING_APPROVE",
                "AUDITING",
            ),
            (TicketStatus::Approved, "APPROVED", "APPROVED", "APPROVED"),
            (TicketStatus::Rejected, "REJECTED", "REJECT", "REJECT"),
            (TicketStatus::Withdrawn, "WITHDRAWN", "REVOKE", "CANCEL"),
            (TicketStatus::Expired, "EXPIRED", "REJECT", "REJECT"),
        ];
        for (status, callback, list, detail) in rows {
            assert_eq!(status.dataphin_status(), callback);
            assert_eq!(status.list_status(), list);
            assert_eq!(status.workflow_ins_code(), detail);
            assert_eq!(TicketStatus::parse(callback), Some(status));
            assert!(TicketStatus::from_list_status(list)
                .unwrap()
                .contains(&status));
        }
    }

    #[test]
    fn only_pending_changes_and_only_once() {
        for from in TicketStatus::ALL {
            for to in TicketStatus::ALL {
                let allowed = from == TicketStatus::Pending && to != TicketStatus::Pending;
                assert_eq!(from.can_become(to), allowed, "{from:?} -> {to:?}");
            }
        }
        assert!(!TicketStatus::Pending.is_final());
        assert!(TicketStatus::Expired.is_final());
    }

    #[test]
    fn relations_parse_dataphin_and_rule_spellings() {
        assert_eq!(Relation::from_dataphin("OR"), Some(Relation::Or));
        assert_eq!(Relation::from_dataphin("AND"), Some(Relation::And));
        assert_eq!(Relation::parse("and"), Some(Relation::And));
        assert_eq!(Relation::from_dataphin("XOR"), None);
    }
}
