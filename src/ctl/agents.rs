//! `ctl agents` (a search, every page) and `ctl agent` (one agent with its card): what live
//! agents offer, as tables or JSON.

use std::io::Write;

use serde_json::{Value, json};

use super::render::table;
use super::{Ctl, CtlError, print};
use crate::proto;

/// What `ctl agents` searches by.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentFilters {
    #[arg(long, short, default_value = "default")]
    pub namespace: String,
    /// Free text, ranked (BM25) over names, descriptions, skills, tags and examples.
    #[arg(long, short, default_value = "")]
    pub query: String,
    /// Every one of these skill ids (repeatable).
    #[arg(long = "skill")]
    pub skills: Vec<String>,
    /// Every one of these tags (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Also agents nothing live serves now.
    #[arg(long)]
    pub include_offline: bool,
}

fn state(s: i32) -> &'static str {
    match proto::AgentState::try_from(s) {
        Ok(proto::AgentState::Live) => "LIVE",
        Ok(proto::AgentState::NoLiveInstances) => "NO_LIVE_INSTANCES",
        _ => "UNSPECIFIED",
    }
}

fn kind(k: i32) -> &'static str {
    match proto::CardKind::try_from(k) {
        Ok(proto::CardKind::Mcp) => "mcp",
        _ => "a2a",
    }
}

fn agent_json(a: &proto::Agent, score: Option<f32>) -> Value {
    let mut v = json!({
        "namespace": a.namespace,
        "logical_id": a.logical_id,
        "state": state(a.state),
        "kind": kind(a.kind),
        "digest": a.digest,
        "name": a.name,
        "description": a.description,
        "version": a.version,
        "skills": a.skills.iter().map(|s| json!({"id": s.id, "name": s.name, "tags": s.tags})).collect::<Vec<_>>(),
        "live_instances": a.live_instances.iter().map(|l| json!({"instance_id": l.instance_id, "endpoint": l.endpoint})).collect::<Vec<_>>(),
        "revision": a.revision,
    });
    if let Some(s) = score {
        v["score"] = json!(s);
    }
    if let Some(card) = &a.card {
        // The card as JSON, as published (it is valid JSON: the registry validated it).
        v["card"] = serde_json::from_str(&card.json).unwrap_or(Value::String(card.json.clone()));
    }
    v
}

impl Ctl {
    pub(super) async fn agents(
        &mut self,
        out: &mut impl Write,
        f: AgentFilters,
    ) -> Result<(), CtlError> {
        let mut req = proto::SearchAgentsRequest {
            namespace: f.namespace,
            query: f.query,
            skills: f.skills,
            tags: f.tags,
            include_offline: f.include_offline,
            page_size: 1000,
            ..Default::default()
        };
        let mut all = Vec::new();
        loop {
            let page = self.catalog.search_agents(req.clone()).await?.into_inner();
            all.extend(page.results);
            if page.next_page_token.is_empty() {
                break;
            }
            req.page_token = page.next_page_token;
        }
        let rows: Vec<Vec<String>> = all
            .iter()
            .filter_map(|r| {
                let a = r.agent.as_ref()?;
                Some(vec![
                    a.logical_id.clone(),
                    state(a.state).to_string(),
                    a.live_count.to_string(),
                    kind(a.kind).to_string(),
                    a.name.clone(),
                    a.version.clone(),
                    a.skills
                        .iter()
                        .map(|s| s.id.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    format!("{:.2}", r.score),
                ])
            })
            .collect();
        let headers = [
            "LOGICAL_ID",
            "STATE",
            "LIVE",
            "KIND",
            "NAME",
            "VERSION",
            "SKILLS",
            "SCORE",
        ];
        let json = Value::Array(
            all.iter()
                .filter_map(|r| Some(agent_json(r.agent.as_ref()?, Some(r.score))))
                .collect(),
        );
        Ok(print(out, self.output, table(&headers, &rows), json)?)
    }

    pub(super) async fn agent(
        &mut self,
        out: &mut impl Write,
        namespace: String,
        logical_id: String,
    ) -> Result<(), CtlError> {
        let req = proto::GetAgentRequest {
            namespace,
            logical_id,
        };
        let a = self.catalog.get_agent(req).await?.into_inner().agent;
        let a = a.unwrap_or_default();
        let mut detail = String::new();
        for (k, v) in [
            ("namespace", a.namespace.clone()),
            ("logical_id", a.logical_id.clone()),
            ("state", state(a.state).to_string()),
            ("live_instances", a.live_count.to_string()),
            ("kind", kind(a.kind).to_string()),
            ("digest", a.digest.clone()),
            ("name", a.name.clone()),
            ("version", a.version.clone()),
            ("description", a.description.clone()),
        ] {
            detail.push_str(&format!("{k:<16}{v}\n"));
        }
        for s in &a.skills {
            detail.push_str(&format!(
                "{:<16}{} ({})\n",
                "skill",
                s.id,
                s.tags.join(", ")
            ));
        }
        for l in &a.live_instances {
            detail.push_str(&format!(
                "{:<16}{} {}\n",
                "instance", l.instance_id, l.endpoint
            ));
        }
        if let Some(card) = &a.card {
            detail.push_str("card\n");
            detail.push_str(&card.json);
            detail.push('\n');
        }
        Ok(print(out, self.output, detail, agent_json(&a, None))?)
    }
}
