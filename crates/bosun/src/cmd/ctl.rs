//! `bosun apply`, `bosun delete` and `bosun get`: kubectl's verbs against pilot's store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use bosun_api::Kind;
use bosun_api::load::read_sources;
use bosun_pilot::client::{ClientError, PilotClient};
use serde_json::Value;

/// Where pilot's HTTP API is.
#[derive(Debug, clap::Args)]
pub(crate) struct PilotArgs {
    /// Pilot's HTTP API address [default: the pilot of the mesh `bosun up` runs, else
    /// 127.0.0.1:15014].
    #[arg(long = "pilot", env = "BOSUN_PILOT", global = true)]
    pilot: Option<String>,
}

/// Where pilot's API is when no flag says: the mesh `bosun up` runs, else pilot's default.
fn default_pilot() -> String {
    bosun_local::state::read_up(&bosun_local::state::default_state_dir())
        .map_or_else(|| "127.0.0.1:15014".to_owned(), |up| up.api)
}

impl PilotArgs {
    pub(crate) fn client(&self) -> anyhow::Result<PilotClient> {
        let address = self.pilot.clone().unwrap_or_else(default_pilot);
        Ok(PilotClient::new(&address)?)
    }
}

/// Runs a client call on a small runtime.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    Ok(runtime.block_on(future))
}

/// Prints a refusal as kubectl does (one problem per line) and gives the exit code.
fn refused(error: ClientError) -> anyhow::Result<ExitCode> {
    match error {
        ClientError::Refused {
            message, problems, ..
        } => {
            if problems.is_empty() {
                eprintln!("error: {message}");
            } else {
                for problem in problems {
                    eprintln!("error: {problem}");
                }
            }
            Ok(ExitCode::FAILURE)
        }
        other => Err(other.into()),
    }
}

/// `kind.group/name` as kubectl prints it.
fn resource_ref(kind: &str, name: &str) -> String {
    match Kind::ALL.iter().find(|k| k.info().name == kind) {
        Some(k) if !k.info().group.is_empty() => {
            format!("{}.{}/{name}", kind.to_ascii_lowercase(), k.info().group)
        }
        _ => format!("{}/{name}", kind.to_ascii_lowercase()),
    }
}

/// Arguments of `bosun apply`.
#[derive(Debug, clap::Args)]
pub(crate) struct ApplyArgs {
    /// Files or directories of YAML (`-` for stdin).
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// Namespace for resources that name none.
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
    #[command(flatten)]
    pilot: PilotArgs,
}

pub(crate) fn apply(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let client = args.pilot.client()?;
    let sources = read_sources(&args.files)?;
    block_on(async move {
        let mut code = ExitCode::SUCCESS;
        for source in sources {
            match client
                .apply(source.text.clone(), &source.name, args.namespace.as_deref())
                .await
            {
                Ok(answer) => {
                    for result in answer["results"].as_array().into_iter().flatten() {
                        println!(
                            "{} {}",
                            resource_ref(
                                result["kind"].as_str().unwrap_or(""),
                                result["name"].as_str().unwrap_or("")
                            ),
                            result["action"].as_str().unwrap_or("")
                        );
                    }
                }
                Err(e) => code = refused(e)?,
            }
        }
        Ok(code)
    })?
}

/// Arguments of `bosun delete`.
#[derive(Debug, clap::Args)]
pub(crate) struct DeleteArgs {
    /// Files or directories naming what to delete.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    /// `KIND NAME...` (kubectl's names: `vs`, `dr`, `virtualservice`, …).
    args: Vec<String>,
    /// Namespace.
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
    #[command(flatten)]
    pilot: PilotArgs,
}

pub(crate) fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let client = args.pilot.client()?;
    anyhow::ensure!(
        args.files.is_empty() != args.args.is_empty(),
        "give either -f FILES or KIND NAME..."
    );
    let sources = read_sources(&args.files)?;
    block_on(async move {
        let print = |answer: &Value| {
            for deleted in answer["deleted"].as_array().into_iter().flatten() {
                let reference = resource_ref(
                    deleted["kind"].as_str().unwrap_or(""),
                    deleted["name"].as_str().unwrap_or(""),
                );
                let (kind, name) = reference.split_once('/').unwrap_or((&reference, ""));
                println!("{kind} \"{name}\" deleted");
            }
        };
        let mut code = ExitCode::SUCCESS;
        for source in sources {
            match client
                .delete_documents(source.text.clone(), &source.name, args.namespace.as_deref())
                .await
            {
                Ok(answer) => print(&answer),
                Err(e) => code = refused(e)?,
            }
        }
        if let Some((kind, names)) = args.args.split_first() {
            let kind = Kind::from_cli_name(kind)
                .with_context(|| format!("the server doesn't have a resource type \"{kind}\""))?;
            anyhow::ensure!(!names.is_empty(), "give the name of the {kind} to delete");
            let namespace = args.namespace.as_deref().unwrap_or("default");
            for name in names {
                match client.delete(kind.info().plural, namespace, name).await {
                    Ok(answer) => print(&answer),
                    Err(e) => code = refused(e)?,
                }
            }
        }
        Ok(code)
    })?
}

/// Arguments of `bosun get`.
#[derive(Debug, clap::Args)]
pub(crate) struct GetArgs {
    /// The kind (`vs`, `dr`, `gw`, `se`, `pa`, `ap`, `svc`, `po`, or full names).
    kind: String,
    /// A name, for one resource.
    name: Option<String>,
    /// Namespace.
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long = "all-namespaces")]
    all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_parser = ["yaml", "json", "name"])]
    output: Option<String>,
    #[command(flatten)]
    pilot: PilotArgs,
}

pub(crate) fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let client = args.pilot.client()?;
    let kind = Kind::from_cli_name(&args.kind)
        .with_context(|| format!("the server doesn't have a resource type \"{}\"", args.kind))?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    block_on(async move {
        let answer = match &args.name {
            Some(name) => client.get(kind.info().plural, &namespace, name).await,
            None => {
                let ns =
                    (!args.all_namespaces && kind.info().namespaced).then_some(namespace.as_str());
                client.list(kind.info().plural, ns).await
            }
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => return refused(e),
        };
        let items: Vec<Value> = if args.name.is_some() {
            vec![answer.clone()]
        } else {
            answer["items"].as_array().cloned().unwrap_or_default()
        };
        match args.output.as_deref() {
            Some("json") => println!("{}", serde_json::to_string_pretty(&answer)?),
            Some("yaml") => print!("{}", serde_saphyr::to_string(&answer)?),
            Some("name") => {
                for item in &items {
                    println!(
                        "{}",
                        resource_ref(
                            kind.info().name,
                            item["metadata"]["name"].as_str().unwrap_or("")
                        )
                    );
                }
            }
            _ => {
                if items.is_empty() {
                    if args.all_namespaces || !kind.info().namespaced {
                        eprintln!("No resources found");
                    } else {
                        eprintln!("No resources found in {namespace} namespace.");
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                print!("{}", table(kind, &items, args.all_namespaces));
            }
        }
        Ok(ExitCode::SUCCESS)
    })?
}

fn list_text(value: &Value) -> String {
    let items: Vec<String> = value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(|s| format!("\"{s}\"")))
        .collect();
    format!("[{}]", items.join(","))
}

/// The columns kubectl (with Istio's CRDs) prints for a kind.
fn columns(kind: Kind, item: &Value) -> Vec<(&'static str, String)> {
    let spec = &item["spec"];
    let text = |v: &Value, default: &str| v.as_str().unwrap_or(default).to_owned();
    match kind {
        Kind::VirtualService => vec![
            ("GATEWAYS", list_text(&spec["gateways"])),
            ("HOSTS", list_text(&spec["hosts"])),
        ],
        Kind::DestinationRule => vec![("HOST", text(&spec["host"], ""))],
        Kind::ServiceEntry => vec![
            ("HOSTS", list_text(&spec["hosts"])),
            ("LOCATION", text(&spec["location"], "")),
            ("RESOLUTION", text(&spec["resolution"], "")),
        ],
        Kind::PeerAuthentication => vec![("MODE", text(&spec["mtls"]["mode"], ""))],
        Kind::AuthorizationPolicy => vec![("ACTION", text(&spec["action"], "ALLOW"))],
        Kind::Service => {
            let ports: Vec<String> = spec["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP")))
                .collect();
            vec![
                ("TYPE", text(&spec["type"], "ClusterIP")),
                ("CLUSTER-IP", text(&spec["clusterIP"], "<none>")),
                ("PORT(S)", ports.join(",")),
            ]
        }
        Kind::Pod => vec![
            ("STATUS", text(&item["status"]["phase"], "Pending")),
            ("IP", text(&item["status"]["podIP"], "<none>")),
        ],
        Kind::Deployment => vec![(
            "REPLICAS",
            spec["replicas"].as_i64().unwrap_or(1).to_string(),
        )],
        _ => Vec::new(),
    }
}

fn table(kind: Kind, items: &[Value], with_namespace: bool) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header: Vec<String> = Vec::new();
    if with_namespace {
        header.push("NAMESPACE".to_owned());
    }
    header.push("NAME".to_owned());
    header.extend(
        columns(kind, &Value::Null)
            .into_iter()
            .map(|(h, _)| h.to_owned()),
    );
    rows.push(header);
    for item in items {
        let mut row = Vec::new();
        if with_namespace {
            row.push(
                item["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            );
        }
        row.push(item["metadata"]["name"].as_str().unwrap_or("").to_owned());
        row.extend(columns(kind, item).into_iter().map(|(_, v)| v));
        rows.push(row);
    }
    crate::cmd::format_table(&rows)
}
