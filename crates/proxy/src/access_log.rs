//! Access logs (`envoy.access_loggers.file`, `stdout`, `stderr`) in text or JSON.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use bosun_xds::pb::envoy::config::accesslog::v3::{AccessLog, access_log};
use bosun_xds::pb::envoy::config::core::v3::{
    SubstitutionFormatString, substitution_format_string,
};
use bosun_xds::pb::envoy::extensions::access_loggers::file::v3::{FileAccessLog, file_access_log};
use bosun_xds::pb::envoy::extensions::access_loggers::stream::v3::{
    StderrAccessLog, StdoutAccessLog,
};
use tokio::sync::mpsc;

use crate::config::{self, ConfigError};
use crate::format::{DEFAULT_ACCESS_LOG_FORMAT, FormatContext, Template};
use crate::support;

/// How an entry is written.
#[derive(Clone, Debug)]
enum Format {
    Text(Template),
    Json {
        fields: Vec<(String, Template)>,
        omit_empty: bool,
    },
}

/// One configured access log.
#[derive(Clone, Debug)]
pub struct AccessLogger {
    format: Format,
    sink: Sink,
}

impl AccessLogger {
    /// Compiles the access logs of a listener, connection manager or TCP proxy.
    pub fn compile_all(logs: &[AccessLog]) -> Result<Vec<Arc<AccessLogger>>, ConfigError> {
        logs.iter()
            .map(|log| Self::compile(log).map(Arc::new))
            .collect()
    }

    fn compile(log: &AccessLog) -> Result<AccessLogger, ConfigError> {
        if log.filter.is_some() {
            return Err(ConfigError::unsupported("access log filters"));
        }
        let Some(access_log::ConfigType::TypedConfig(any)) = &log.config_type else {
            return Err(ConfigError::invalid(format!(
                "access log {:?} has no typed_config",
                log.name
            )));
        };
        match config::type_name(any) {
            support::FILE_ACCESS_LOG => {
                let file: FileAccessLog =
                    config::typed_config(Some(any), "access_log")?.unwrap_or_default();
                let format = match file.access_log_format {
                    None => Format::Text(default_template()),
                    Some(file_access_log::AccessLogFormat::Format(text)) => {
                        Format::Text(parse(&text)?)
                    }
                    Some(file_access_log::AccessLogFormat::JsonFormat(fields)) => {
                        json_format(&fields, false)?
                    }
                    Some(file_access_log::AccessLogFormat::LogFormat(format)) => {
                        substitution_format(&format)?
                    }
                    Some(_) => return Err(ConfigError::unsupported("typed_json_format")),
                };
                let sink = match file.path.as_str() {
                    "/dev/stdout" => Sink::Stdout,
                    "/dev/stderr" => Sink::Stderr,
                    path => Sink::file(path)?,
                };
                Ok(AccessLogger { format, sink })
            }
            support::STDOUT_ACCESS_LOG => {
                let stdout: StdoutAccessLog =
                    config::typed_config(Some(any), "access_log")?.unwrap_or_default();
                Ok(AccessLogger {
                    format: stream_format(stdout.access_log_format.map(|f| match f {
                        bosun_xds::pb::envoy::extensions::access_loggers::stream::v3::stdout_access_log::AccessLogFormat::LogFormat(f) => f,
                    }))?,
                    sink: Sink::Stdout,
                })
            }
            support::STDERR_ACCESS_LOG => {
                let stderr: StderrAccessLog =
                    config::typed_config(Some(any), "access_log")?.unwrap_or_default();
                Ok(AccessLogger {
                    format: stream_format(stderr.access_log_format.map(|f| match f {
                        bosun_xds::pb::envoy::extensions::access_loggers::stream::v3::stderr_access_log::AccessLogFormat::LogFormat(f) => f,
                    }))?,
                    sink: Sink::Stderr,
                })
            }
            other => Err(ConfigError::unsupported(format!("access logger {other}"))),
        }
    }

    /// Writes one entry.
    pub fn log(&self, ctx: &FormatContext<'_>) {
        let line = match &self.format {
            Format::Text(template) => template.render(ctx),
            Format::Json { fields, omit_empty } => {
                let mut object = serde_json::Map::new();
                for (key, template) in fields {
                    let value = template.render_json(ctx);
                    if *omit_empty
                        && (value.is_null() || value == serde_json::Value::String(String::new()))
                    {
                        continue;
                    }
                    object.insert(key.clone(), value);
                }
                let mut line = serde_json::Value::Object(object).to_string();
                line.push('\n');
                line
            }
        };
        self.sink.write(line);
    }
}

fn parse(text: &str) -> Result<Template, ConfigError> {
    Template::parse(text).map_err(|e| ConfigError::invalid(format!("access log format: {e}")))
}

fn default_template() -> Template {
    static DEFAULT: OnceLock<Template> = OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            Template::parse(DEFAULT_ACCESS_LOG_FORMAT)
                .unwrap_or_else(|e| panic!("Envoy's default access log format must parse: {e}"))
        })
        .clone()
}

fn stream_format(format: Option<SubstitutionFormatString>) -> Result<Format, ConfigError> {
    match format {
        None => Ok(Format::Text(default_template())),
        Some(format) => substitution_format(&format),
    }
}

fn substitution_format(format: &SubstitutionFormatString) -> Result<Format, ConfigError> {
    if !format.formatters.is_empty() {
        return Err(ConfigError::unsupported("custom formatters"));
    }
    match &format.format {
        Some(substitution_format_string::Format::TextFormat(text)) => {
            Ok(Format::Text(parse(text)?))
        }
        Some(substitution_format_string::Format::TextFormatSource(source)) => {
            let text = config::data_source(source)?;
            Ok(Format::Text(parse(&String::from_utf8_lossy(&text))?))
        }
        Some(substitution_format_string::Format::JsonFormat(fields)) => {
            json_format(fields, format.omit_empty_values)
        }
        None => Ok(Format::Text(default_template())),
    }
}

fn json_format(
    fields: &bosun_xds::pb::google::protobuf::Struct,
    omit_empty: bool,
) -> Result<Format, ConfigError> {
    use bosun_xds::pb::google::protobuf::value::Kind;
    let mut compiled = Vec::new();
    let mut keys: Vec<&String> = fields.fields.keys().collect();
    keys.sort();
    for key in keys {
        let text = match fields.fields[key].kind.as_ref() {
            Some(Kind::StringValue(s)) => s.clone(),
            Some(Kind::NumberValue(n)) => n.to_string(),
            Some(Kind::BoolValue(b)) => b.to_string(),
            _ => {
                return Err(ConfigError::unsupported(format!(
                    "nested json_format value for {key:?}"
                )));
            }
        };
        compiled.push((key.clone(), parse(&text)?));
    }
    Ok(Format::Json {
        fields: compiled,
        omit_empty,
    })
}

/// Where entries go. Writes happen on a background task so the request path never blocks on
/// the disk; lines are flushed as soon as no more are waiting.
#[derive(Clone, Debug)]
enum Sink {
    Stdout,
    Stderr,
    File(mpsc::UnboundedSender<String>),
}

impl Sink {
    fn file(path: &str) -> Result<Sink, ConfigError> {
        // One writer per path, shared by every logger writing there.
        static WRITERS: OnceLock<Mutex<HashMap<String, mpsc::UnboundedSender<String>>>> =
            OnceLock::new();
        let mut writers = WRITERS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = writers.get(path).filter(|s| !s.is_closed()) {
            return Ok(Sink::File(sender.clone()));
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| ConfigError::File {
                path: path.to_owned(),
                source,
            })?;
        let (sender, mut receiver) = mpsc::unbounded_channel::<String>();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut writer = std::io::BufWriter::new(file);
                while let Some(line) = receiver.blocking_recv() {
                    let _ = writer.write_all(line.as_bytes());
                    while let Ok(more) = receiver.try_recv() {
                        let _ = writer.write_all(more.as_bytes());
                    }
                    let _ = writer.flush();
                }
            })
            .map_err(|source| ConfigError::File {
                path: path.to_owned(),
                source,
            })?;
        writers.insert(path.to_owned(), sender.clone());
        Ok(Sink::File(sender))
    }

    fn write(&self, line: String) {
        match self {
            Sink::Stdout => {
                let _ = std::io::stdout().lock().write_all(line.as_bytes());
            }
            Sink::Stderr => {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            Sink::File(sender) => {
                let _ = sender.send(line);
            }
        }
    }
}
