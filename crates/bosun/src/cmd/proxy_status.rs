//! `bosun proxy-status` and `bosun proxy-config`: what pilot sent each proxy, as istioctl
//! shows it.

use std::process::ExitCode;

use serde_json::Value;

use crate::cmd::ctl::{PilotArgs, block_on};
use crate::cmd::format_table;

/// Arguments of `bosun proxy-status`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// One proxy (`<pod>.<namespace>`), for its details.
    proxy: Option<String>,
    #[command(flatten)]
    pilot: PilotArgs,
}

const TYPES: [&str; 4] = ["cds", "lds", "eds", "rds"];

pub(crate) fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = args.pilot.client()?;
    let proxies = block_on(client.syncz())??;
    let proxies: Vec<&Value> = proxies
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            args.proxy
                .as_deref()
                .is_none_or(|name| p["proxy"] == name || p["id"] == name)
        })
        .collect();
    if proxies.is_empty() {
        if let Some(name) = &args.proxy {
            anyhow::bail!("proxy {name} is not connected to pilot");
        }
        eprintln!("No proxies connected.");
        return Ok(ExitCode::SUCCESS);
    }
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let mut rows = vec![
        [
            "NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "PILOT", "VERSION",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    let mut nacks = Vec::new();
    for proxy in &proxies {
        let mut row = vec![text(&proxy["proxy"]), text(&proxy["cluster_id"])];
        for short in TYPES {
            row.push(text(&proxy[format!("{short}_state")]));
            if let Some(nack) = proxy[format!("{short}_nack")].as_str() {
                nacks.push(format!(
                    "{} rejected {}: {nack}",
                    text(&proxy["proxy"]),
                    short.to_ascii_uppercase()
                ));
            }
        }
        row.push("pilot".to_owned());
        row.push(text(&proxy["istio_version"]));
        rows.push(row);
    }
    print!("{}", format_table(&rows));
    if !nacks.is_empty() {
        println!();
        for nack in nacks {
            println!("{nack}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `proxy-config` shows.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Section {
    /// Clusters (CDS).
    #[value(alias = "cluster", alias = "c")]
    Clusters,
    /// Listeners (LDS).
    #[value(alias = "listener", alias = "l")]
    Listeners,
    /// Route tables (RDS).
    #[value(alias = "route", alias = "r")]
    Routes,
    /// Endpoints (EDS).
    #[value(alias = "endpoint", alias = "ep")]
    Endpoints,
    /// All of them.
    All,
}

/// Arguments of `bosun proxy-config`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConfigArgs {
    /// What to show.
    section: Section,
    /// The proxy (`<pod>.<namespace>`).
    proxy: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_parser = ["short", "json"], default_value = "short")]
    output: String,
    #[command(flatten)]
    pilot: PilotArgs,
}

pub(crate) fn config(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    let client = args.pilot.client()?;
    let dump = block_on(client.config_dump(&args.proxy))??;
    let config = |at: &str| -> Value {
        dump["configs"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["@type"].as_str().is_some_and(|t| t.ends_with(at)))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let sections: Vec<(Section, &str)> = match args.section {
        Section::All => vec![
            (Section::Clusters, "ClustersConfigDump"),
            (Section::Listeners, "ListenersConfigDump"),
            (Section::Routes, "RoutesConfigDump"),
            (Section::Endpoints, "EndpointsConfigDump"),
        ],
        Section::Clusters => vec![(Section::Clusters, "ClustersConfigDump")],
        Section::Listeners => vec![(Section::Listeners, "ListenersConfigDump")],
        Section::Routes => vec![(Section::Routes, "RoutesConfigDump")],
        Section::Endpoints => vec![(Section::Endpoints, "EndpointsConfigDump")],
    };
    if args.output == "json" {
        let values: Vec<Value> = sections.iter().map(|(_, at)| config(at)).collect();
        println!("{}", serde_json::to_string_pretty(&Value::Array(values))?);
        return Ok(ExitCode::SUCCESS);
    }
    for (index, (section, at)) in sections.iter().enumerate() {
        if index > 0 {
            println!();
        }
        let value = config(at);
        let rows = match section {
            Section::Clusters => cluster_rows(&value),
            Section::Listeners => listener_rows(&value),
            Section::Routes => route_rows(&value),
            Section::Endpoints | Section::All => endpoint_rows(&value),
        };
        print!("{}", format_table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// `name.namespace` from `/apis/<group>/<version>/namespaces/<ns>/<kind>/<name>`.
fn config_ref(metadata: &Value) -> String {
    let path = text(&metadata["filter_metadata"]["istio"]["config"]);
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [.., "namespaces", namespace, _, name] => format!("{name}.{namespace}"),
        _ => String::new(),
    }
}

fn cluster_rows(dump: &Value) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "SERVICE FQDN",
            "PORT",
            "SUBSET",
            "DIRECTION",
            "TYPE",
            "DESTINATION RULE",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for entry in dump["dynamic_active_clusters"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let cluster = &entry["cluster"];
        let name = text(&cluster["name"]);
        let kind = cluster["type"]
            .as_str()
            .unwrap_or(if cluster["eds_cluster_config"].is_null() {
                "STATIC"
            } else {
                "EDS"
            })
            .to_owned();
        let parts: Vec<&str> = name.split('|').collect();
        let row = match parts.as_slice() {
            [direction @ ("outbound" | "inbound"), port, subset, fqdn] => vec![
                fqdn.to_string(),
                port.to_string(),
                if subset.is_empty() {
                    "-".into()
                } else {
                    subset.to_string()
                },
                direction.to_string(),
                kind,
                config_ref(&cluster["metadata"]),
            ],
            _ => vec![
                name.to_owned(),
                "-".into(),
                "-".into(),
                "-".into(),
                kind,
                String::new(),
            ],
        };
        rows.push(row);
    }
    rows
}

fn listener_rows(dump: &Value) -> Vec<Vec<String>> {
    let mut rows = vec![
        ["ADDRESSES", "PORT", "MATCH", "DESTINATION"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for entry in dump["dynamic_listeners"].as_array().into_iter().flatten() {
        let listener = &entry["active_state"]["listener"];
        let socket = &listener["address"]["socket_address"];
        let address = text(&socket["address"]).to_owned();
        let port = socket["port_value"].to_string();
        let chains = listener["filter_chains"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(listener.get("default_filter_chain"));
        for chain in chains {
            let matcher = &chain["filter_chain_match"];
            let mut conditions = Vec::new();
            if let Some(port) = matcher["destination_port"].as_u64() {
                conditions.push(format!("Addr: *:{port}"));
            }
            if let Some(names) = matcher["server_names"].as_array() {
                let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
                conditions.push(format!("SNI: {}", names.join(",")));
            }
            if let Some(protocols) = matcher["application_protocols"].as_array() {
                let protocols: Vec<&str> = protocols.iter().filter_map(Value::as_str).collect();
                conditions.push(format!("App: {}", protocols.join(",")));
            }
            let matched = if conditions.is_empty() {
                "ALL".to_owned()
            } else {
                conditions.join("; ")
            };
            rows.push(vec![
                address.clone(),
                port.clone(),
                matched,
                chain_destination(chain),
            ]);
        }
    }
    rows
}

fn chain_destination(chain: &Value) -> String {
    for filter in chain["filters"].as_array().into_iter().flatten() {
        let config = &filter["typed_config"];
        if let Some(route) = config["rds"]["route_config_name"].as_str() {
            return format!("Route: {route}");
        }
        if !config["route_config"].is_null() {
            let cluster =
                config["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["cluster"]
                    .as_str()
                    .unwrap_or("");
            return format!("Inline Route: {cluster}");
        }
        if let Some(cluster) = config["cluster"].as_str() {
            return format!("Cluster: {cluster}");
        }
        if !config["weighted_clusters"].is_null() {
            return "Clusters: weighted".to_owned();
        }
    }
    String::new()
}

fn route_match(route: &Value) -> String {
    let m = &route["match"];
    if let Some(prefix) = m["prefix"].as_str() {
        format!("{prefix}*")
    } else if let Some(path) = m["path"].as_str() {
        path.to_owned()
    } else if let Some(regex) = m["safe_regex"]["regex"].as_str() {
        regex.to_owned()
    } else {
        "/*".to_owned()
    }
}

fn route_rows(dump: &Value) -> Vec<Vec<String>> {
    let mut rows = vec![
        ["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for entry in dump["dynamic_route_configs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let config = &entry["route_config"];
        let name = text(&config["name"]);
        for vhost in config["virtual_hosts"].as_array().into_iter().flatten() {
            let domains: Vec<&str> = vhost["domains"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let shown = match domains.as_slice() {
                [] => String::new(),
                [one] => (*one).to_owned(),
                [first, rest @ ..] => format!("{first} + {} more...", rest.len()),
            };
            for route in vhost["routes"].as_array().into_iter().flatten() {
                rows.push(vec![
                    name.to_owned(),
                    text(&vhost["name"]).to_owned(),
                    shown.clone(),
                    route_match(route),
                    config_ref(&route["metadata"]),
                ]);
            }
        }
    }
    rows
}

fn endpoint_rows(dump: &Value) -> Vec<Vec<String>> {
    let mut rows = vec![
        ["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for entry in dump["dynamic_endpoint_configs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let assignment = &entry["endpoint_config"];
        let cluster = text(&assignment["cluster_name"]);
        for locality in assignment["endpoints"].as_array().into_iter().flatten() {
            for endpoint in locality["lb_endpoints"].as_array().into_iter().flatten() {
                let socket = &endpoint["endpoint"]["address"]["socket_address"];
                rows.push(vec![
                    format!("{}:{}", text(&socket["address"]), socket["port_value"]),
                    "HEALTHY".to_owned(),
                    "OK".to_owned(),
                    cluster.to_owned(),
                ]);
            }
        }
    }
    rows
}
