use integration_tests::harness::*;
use serde_json::json;

#[tokio::test]
async fn probe_sizes() {
    let b = Bridge::start(Options::default()).await;
    let base: serde_json::Value = serde_json::from_slice(&fixture("17_plain_text_content.json")).unwrap();
    for (i, kb) in [100usize, 130, 150, 200, 340, 500].iter().enumerate() {
        let mut v = base.clone();
        v["applyId"] = json!(format!("size{i}"));
        v["content"] = json!("y".repeat(kb * 1024));
        let (status, reply) = b.create(&serde_json::to_vec(&v).unwrap()).await;
        println!("{kb} KB free text -> {status} {}", reply.to_string().chars().take(300).collect::<String>());
        let mut v = parsed_code(&base, *kb);
        v["applyId"] = json!(format!("code{i}"));
        let (status, reply) = b.create(&serde_json::to_vec(&v).unwrap()).await;
        println!("{kb} KB code review -> {status} {}", reply.to_string().chars().take(300).collect::<String>());
    }
}

fn parsed_code(base: &serde_json::Value, kb: usize) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(&fixture("04_code_review.json")).unwrap();
    let _ = base;
    let mut c: serde_json::Value = serde_json::from_str(v["content"].as_str().unwrap()).unwrap();
    c["applyObject"]["codeContent"] = json!("SELECT 1;\n".repeat(kb * 1024 / 10));
    v["content"] = json!(c.to_string());
    v
}
