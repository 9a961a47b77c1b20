//! The sandbox's company BPM: an approval engine over the `ticket.created` events the bridge sent
//! to [`crate::fake_bpm`] (which checks their signatures). Acting on a task produces the SPEC 9
//! event the BPM posts back to `/callback/webhook`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::fake_dingtalk::dingtalk_time;

/// One approver's task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BpmTask {
    pub task_id: String,
    pub node_id: String,
    pub user_id: String,
    /// `RUNNING|COMPLETED|CANCELED`.
    pub status: String,
    /// `agree|refuse|redirected` once done.
    pub result: Option<String>,
}

/// One node of the flow, as the bridge sent it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BpmNode {
    pub node_id: String,
    /// `or|and`.
    pub relation: String,
    pub approvers: Vec<String>,
}

/// One BPM instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BpmInstance {
    pub instance_id: String,
    pub ticket_id: String,
    pub title: String,
    /// `RUNNING|COMPLETED|TERMINATED`.
    pub status: String,
    pub result: Option<String>,
    pub nodes: Vec<BpmNode>,
    /// Index of the node now waiting (`nodes.len()` when none is).
    pub current: usize,
    pub tasks: Vec<BpmTask>,
    pub form: Value,
    pub created_ms: i64,
    #[serde(default)]
    next_task: u64,
}

/// What a task may be asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Agree,
    Refuse,
    Redirect(String),
    /// DingTalk only: add approvers after oneself (加签).
    AddApprovers(Vec<String>),
    /// DingTalk only: send the instance back to an earlier step (0-based) (退回).
    SendBack(usize),
    /// DingTalk only: comment without deciding.
    Comment,
}

impl BpmInstance {
    /// The instance for a `ticket.created` event the BPM accepted as `instance_id`.
    pub fn from_created(event: &Value, instance_id: &str, now: i64) -> BpmInstance {
        let mut nodes: Vec<(i64, BpmNode)> = event["nodes"]
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .map(|n| {
                        let approvers = n["approvers"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|p| p["backend_user_id"].as_str())
                                    .map(str::to_owned)
                                    .collect()
                            })
                            .unwrap_or_default();
                        (
                            n["order"].as_i64().unwrap_or_default(),
                            BpmNode {
                                node_id: text(&n["node_id"]),
                                relation: n["relation"].as_str().unwrap_or("or").to_owned(),
                                approvers,
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        nodes.sort_by_key(|(order, _)| *order);
        let mut inst = BpmInstance {
            instance_id: instance_id.to_owned(),
            ticket_id: text(&event["ticket_id"]),
            title: text(&event["title"]),
            status: "RUNNING".into(),
            result: None,
            nodes: nodes.into_iter().map(|(_, n)| n).collect(),
            current: 0,
            tasks: Vec::new(),
            form: event["form"].clone(),
            created_ms: now,
            next_task: 0,
        };
        inst.start_node();
        inst
    }

    fn new_task(&mut self, node_id: &str, user: &str) {
        self.next_task += 1;
        self.tasks.push(BpmTask {
            task_id: format!("{}-t{}", self.instance_id, self.next_task),
            node_id: node_id.to_owned(),
            user_id: user.to_owned(),
            status: "RUNNING".into(),
            result: None,
        });
    }

    fn start_node(&mut self) {
        if let Some(node) = self.nodes.get(self.current).cloned() {
            for user in &node.approvers {
                self.new_task(&node.node_id, user);
            }
        }
    }

    fn cancel_open(&mut self) {
        for t in self.tasks.iter_mut().filter(|t| t.status == "RUNNING") {
            t.status = "CANCELED".into();
        }
    }

    /// The bridge withdrew the ticket (`ticket.withdrawn`).
    pub fn withdraw(&mut self) {
        if self.status == "RUNNING" {
            self.cancel_open();
            self.status = "TERMINATED".into();
        }
    }

    /// Applies an approver's action; returns the event the BPM posts to the bridge.
    pub fn act(
        &mut self,
        task_id: &str,
        action: &Action,
        remark: &str,
        now: i64,
    ) -> Result<Value, String> {
        if self.status != "RUNNING" {
            return Err(format!(
                "instance {} is {}; only a RUNNING instance can be acted on",
                self.instance_id, self.status
            ));
        }
        let pos = self
            .tasks
            .iter()
            .position(|t| t.task_id == task_id)
            .ok_or_else(|| format!("no task {task_id} in instance {}", self.instance_id))?;
        if self.tasks[pos].status != "RUNNING" {
            return Err(format!(
                "task {task_id} is {}; only a RUNNING task can be acted on",
                self.tasks[pos].status
            ));
        }
        if matches!(
            action,
            Action::AddApprovers(_) | Action::SendBack(_) | Action::Comment
        ) {
            return Err("the company BPM (SPEC 9) knows agree, refuse and redirect only".into());
        }
        let node_id = self.tasks[pos].node_id.clone();
        let user = self.tasks[pos].user_id.clone();
        let mut event = json!({
            "event_id": format!("{}-e{}", self.instance_id, random_suffix()),
            "instance_id": self.instance_id,
            "node_id": node_id,
            "operator": {"backend_user_id": user, "reason": remark},
            "final_status": null,
            "occurred_at": now,
        });
        match action {
            Action::Agree => {
                self.tasks[pos].status = "COMPLETED".into();
                self.tasks[pos].result = Some("agree".into());
                event["node_status"] = json!("APPROVED");
                let relation = self
                    .nodes
                    .get(self.current)
                    .map_or("or", |n| n.relation.as_str());
                let node_done = relation != "and"
                    || !self
                        .tasks
                        .iter()
                        .any(|t| t.node_id == node_id && t.status == "RUNNING");
                if node_done {
                    self.cancel_open();
                    self.current += 1;
                    if self.current < self.nodes.len() {
                        self.start_node();
                    } else {
                        self.status = "COMPLETED".into();
                        self.result = Some("agree".into());
                        event["final_status"] = json!("APPROVED");
                    }
                }
            }
            Action::Refuse => {
                self.tasks[pos].status = "COMPLETED".into();
                self.tasks[pos].result = Some("refuse".into());
                self.cancel_open();
                self.status = "COMPLETED".into();
                self.result = Some("refuse".into());
                event["node_status"] = json!("REJECTED");
                event["final_status"] = json!("REJECTED");
            }
            Action::Redirect(to) => {
                self.tasks[pos].status = "CANCELED".into();
                self.tasks[pos].result = Some("redirected".into());
                if let Some(node) = self.nodes.get_mut(self.current) {
                    for u in node.approvers.iter_mut().filter(|u| **u == user) {
                        *u = to.clone();
                    }
                }
                self.new_task(&node_id, to);
                event["node_status"] = json!("TRANSFERRED");
                event["to_user"] = json!(to);
            }
            Action::AddApprovers(_) | Action::SendBack(_) | Action::Comment => {
                unreachable!("refused above")
            }
        }
        Ok(event)
    }

    /// When it was created, as DingTalk would show it (for a uniform page).
    pub fn created(&self) -> String {
        dingtalk_time(self.created_ms)
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn random_suffix() -> String {
    use rand::Rng;
    format!("{:016x}", rand::thread_rng().gen::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created() -> Value {
        json!({"event": "ticket.created", "ticket_id": "T1", "title": "t",
               "nodes": [
                 {"node_id": "n2", "order": 2, "relation": "or", "approvers": [{"backend_user_id": "dave"}]},
                 {"node_id": "n1", "order": 1, "relation": "and", "approvers": [{"backend_user_id": "bob"}, {"backend_user_id": "carol"}]}],
               "form": [{"name": "Title", "value": "t"}]})
    }

    #[test]
    fn and_node_needs_everyone_then_the_next_node_runs() {
        let mut i = BpmInstance::from_created(&created(), "bpm-1", 0);
        assert_eq!(i.tasks.len(), 2, "{:?}", i.tasks);
        assert_eq!(i.tasks[0].node_id, "n1");
        let e = i.act("bpm-1-t1", &Action::Agree, "ok", 1).unwrap();
        assert_eq!(e["node_status"], "APPROVED");
        assert_eq!(e["final_status"], Value::Null);
        assert_eq!(i.tasks.len(), 2, "the second node waits for carol");
        i.act("bpm-1-t2", &Action::Agree, "", 2).unwrap();
        assert_eq!(i.tasks[2].user_id, "dave");
        let e = i
            .act("bpm-1-t3", &Action::Redirect("erin".into()), "away", 3)
            .unwrap();
        assert_eq!(e["node_status"], "TRANSFERRED");
        assert_eq!(e["to_user"], "erin");
        let e = i.act("bpm-1-t4", &Action::Agree, "fine", 4).unwrap();
        assert_eq!(e["final_status"], "APPROVED");
        assert_eq!(i.status, "COMPLETED");
        let err = i.act("bpm-1-t4", &Action::Agree, "", 5).unwrap_err();
        assert!(err.contains("COMPLETED"), "{err}");
    }

    #[test]
    fn a_refusal_ends_the_instance_and_cancels_the_rest() {
        let mut i = BpmInstance::from_created(&created(), "bpm-1", 0);
        let e = i.act("bpm-1-t2", &Action::Refuse, "no", 1).unwrap();
        assert_eq!(e["final_status"], "REJECTED");
        assert_eq!(i.tasks[0].status, "CANCELED");
        assert_eq!(i.result.as_deref(), Some("refuse"));
    }
}
