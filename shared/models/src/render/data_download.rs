//! A data download: the tables and columns, their security levels, the file and its SQL.

use super::form::{text, titled, Form};
use crate::content::DataDownload;

pub(super) fn data_download(form: &mut Form, d: &DataDownload) {
    form.push_opt("Reason", text(d.approval_reason.as_deref()));
    let project = match (
        text(d.project_name.as_deref()),
        text(d.project_id.as_deref()),
    ) {
        (Some(name), Some(id)) => Some(format!("{name} (id {id})")),
        (Some(name), None) => Some(name.to_owned()),
        (None, id) => id.map(|id| format!("id {id}")),
    };
    form.push_opt("Project", project.as_deref());
    form.push_lines(
        "Tables",
        d.table_info_list
            .iter()
            .map(|t| {
                let table = titled(t.table_name.as_deref(), t.table_name_cn.as_deref())
                    .unwrap_or_else(|| "(unnamed table)".to_owned());
                let columns: Vec<String> = t
                    .column_info_list
                    .iter()
                    .map(|c| {
                        let name = text(c.column_name.as_deref()).unwrap_or("(unnamed column)");
                        match text(c.security_level.as_deref()) {
                            Some(level) => format!("{name} ({level})"),
                            None => name.to_owned(),
                        }
                    })
                    .collect();
                if columns.is_empty() {
                    table
                } else {
                    format!("{table}: {}", columns.join(", "))
                }
            })
            .collect(),
    );
    form.push_opt(
        "Highest security level",
        text(d.highest_security_level.as_deref()),
    );
    form.push_opt("Rows", text(d.row_number.as_deref()));
    form.push_opt("File size", text(d.file_size.as_deref()));
    form.push_opt("File expires", text(d.file_exceed_date.as_deref()));
    form.push_opt("SQL", d.sql_content.as_deref());
}
