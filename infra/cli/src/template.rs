//! `bridge create-template`: makes a DingTalk approval template the bridge fills completely, for
//! teams that start without one, and prints the process code to configure. The labels are the
//! Chinese ones the bridge's default aliases match (DINGTALK_FORM_LABELS adds others), so the
//! template works with no further setting.

use std::collections::HashMap;

use dingtalk::{DingTalkClient, DingTalkConfig};

/// The template's components: (componentType, label, required). The first multi-line text
/// receives the whole readable form; the ticket id lets a lost create reply be recognised.
pub const COMPONENTS: [(&str, &str, bool); 6] = [
    ("TextField", "标题", true),
    ("TextField", "申请人", false),
    ("TextField", "申请类型", false),
    ("TextareaField", "审批内容", true),
    ("TextField", "工单号", true),
    ("TextField", "申请原因", false),
];

pub const DEFAULT_NAME: &str = "Dataphin 审批 (approval bridge)";

/// What `create-template` was asked for.
#[derive(Debug, Default)]
pub struct Request {
    pub env_file: Option<String>,
    pub name: Option<String>,
    /// Updates this template instead of creating one.
    pub process_code: Option<String>,
}

/// Creates (or updates) the template; returns the text to print.
pub async fn run(req: &Request) -> Result<String, String> {
    let map = crate::doctor::settings(req.env_file.as_deref())?;
    let get = |k: &str| {
        map.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let need = |k: &'static str| {
        get(k).ok_or_else(|| format!("{k} is required (set it in the env file or the environment)"))
    };
    let agent_id = match get("DINGTALK_AGENT_ID") {
        Some(v) => v
            .parse()
            .map_err(|_| format!("DINGTALK_AGENT_ID must be a number, got {v:?}"))?,
        None => 0,
    };
    let config = DingTalkConfig {
        api_base: get("DINGTALK_API_BASE").unwrap_or_else(|| "https://api.dingtalk.com".into()),
        app_key: need("DINGTALK_APP_KEY")?,
        app_secret: need("DINGTALK_APP_SECRET")?,
        agent_id,
    };
    let http = dingtalk::http_client().map_err(|e| e.to_string())?;
    let client = DingTalkClient::new(config, http);
    let name = req.name.clone().unwrap_or_else(|| DEFAULT_NAME.to_string());
    let code = client
        .save_form(
            req.process_code.as_deref(),
            &name,
            "Tickets of the data platform, forwarded by the approval bridge",
            &COMPONENTS,
        )
        .await
        .map_err(|e| format!("DingTalk did not save the template: {e}"))?;
    let labels: Vec<&str> = COMPONENTS.iter().map(|(_, l, _)| *l).collect();
    Ok(format!(
        "template \"{name}\" saved with the components {}\n\
         DINGTALK_PROCESS_CODE={code}\n\
         next: set DINGTALK_PROCESS_CODE to {code}, and in DingTalk's admin console turn on the template's \
         \"允许提交人撤销审批中的审批单\" (allow the submitter to revoke), else withdrawals are refused",
        labels.join(", ")
    ))
}

/// `--env-file FILE --name NAME --process-code CODE`, in any order.
pub fn parse_args(args: &[&str]) -> Result<Request, String> {
    let mut req = Request::default();
    let mut flags: HashMap<&str, &mut Option<String>> = HashMap::new();
    flags.insert("--env-file", &mut req.env_file);
    flags.insert("--name", &mut req.name);
    flags.insert("--process-code", &mut req.process_code);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flags.get_mut(flag) {
            Some(slot) => **slot = Some((*value).to_string()),
            None => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(req)
}
