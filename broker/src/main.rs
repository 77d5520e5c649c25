//! The `broker` binary: reads the configuration, installs logging, binds the listeners and runs the broker until
//! SIGINT or SIGTERM. SIGHUP reloads every TLS listener's certificate, key and CA files, the password and ACL
//! files, and `log.level`. `broker passwd` manages password files the way `mosquitto_passwd` does.
//!
//! With no arguments it serves anonymous MQTT on 127.0.0.1:1883 only, from the embedded default configuration.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow_lite::Context;
use broker::Listener;
use broker::config::{Config, DEFAULT_CONFIG, ListenerSettings, LogFormat};
use broker::tls::TlsReloader;
use clap::Parser;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Registry, fmt, reload};

/// An MQTT 3.1 / 3.1.1 / 5.0 broker for edge devices and IoT gateways.
///
/// Settings come from the embedded default, then --config FILE, then BROKER__<SECTION>__<KEY> environment
/// variables (such as BROKER__LIMITS__MAX_CONNECTIONS=500), then these flags.
#[derive(Debug, Parser)]
#[command(name = "broker", version, about, long_about)]
struct Args {
    /// TOML configuration file; keys it does not set keep their defaults.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print the default configuration, with comments, and exit.
    #[arg(long, exclusive = true)]
    print_default_config: bool,

    /// Listen on this port instead of each configured listener's port (0 picks a free port).
    #[arg(long, short = 'p', value_name = "N", conflicts_with = "listen")]
    port: Option<u16>,

    /// Listen on ADDR (IP:PORT) instead of the configured listeners (plaintext, with the first configured
    /// listener's allow_anonymous, password_file and acl_file); repeat for several.
    #[arg(long, short = 'l', value_name = "ADDR")]
    listen: Vec<SocketAddr>,

    /// Log line format (overrides log.format).
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<CliLogFormat>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Manage a password file, like mosquitto_passwd: new entries are argon2id hashes; $6$ and $7$ entries made by
    /// mosquitto_passwd are kept as they are.
    Passwd(PasswdArgs),
    /// Print the TOML equivalent of a Mosquitto configuration file, listing every setting it cannot translate.
    MigrateConfig {
        /// The Mosquitto file, such as /etc/mosquitto/mosquitto.conf (its include_dir is followed).
        file: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
#[command(disable_help_flag = false)]
struct PasswdArgs {
    /// Create a new password file (overwrites an existing one).
    #[arg(short = 'c', conflicts_with_all = ["delete", "upgrade"])]
    create: bool,
    /// Delete the user rather than set its password.
    #[arg(short = 'D', conflicts_with_all = ["batch", "upgrade"])]
    delete: bool,
    /// Batch mode: the password is the last argument (it then shows in the process list and shell history).
    #[arg(short = 'b')]
    batch: bool,
    /// Hash every plaintext password of the file in place.
    #[arg(short = 'U', conflicts_with_all = ["batch", "create"])]
    upgrade: bool,
    /// The password file.
    file: PathBuf,
    /// The user.
    #[arg(required_unless_present = "upgrade")]
    username: Option<String>,
    /// The password (with -b).
    #[arg(requires = "batch")]
    password: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CliLogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Passwd(p)) = &args.command {
        return match passwd(p) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::MigrateConfig { file }) = &args.command {
        return migrate_config(file);
    }
    match start(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `broker passwd`: edits a password file the way `mosquitto_passwd` does, replacing it atomically.
fn passwd(p: &PasswdArgs) -> Result<(), String> {
    use broker::auth::password::{Edit, edit_file};
    let edit = match (&p.username, p.delete, p.upgrade) {
        (_, _, true) => Edit::Upgrade,
        (Some(u), true, _) => Edit::Delete { username: u.clone() },
        (Some(u), false, _) => {
            let password = match (&p.password, p.batch) {
                (Some(pw), true) => pw.clone(),
                (None, true) => return Err("-b needs the password as the last argument".into()),
                _ => read_password()?,
            };
            Edit::Set { username: u.clone(), password }
        }
        (None, _, false) => return Err("a username is needed".into()),
    };
    let text = if p.create {
        String::new()
    } else {
        std::fs::read_to_string(&p.file).map_err(|e| format!("{}: {e}", p.file.display()))?
    };
    let out = edit_file(&text, &edit)?;
    // Written next to the file and renamed over it: a crash leaves the old file or the new one, never half of one.
    let tmp = p.file.with_extension("tmp-broker-passwd");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        f.write_all(out.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    }
    std::fs::rename(&tmp, &p.file).map_err(|e| format!("{}: {e}", p.file.display()))
}

/// Reads a password twice from standard input (no echo control: pipe it in, or use -b).
fn read_password() -> Result<String, String> {
    use std::io::BufRead;
    let mut lines = std::io::stdin().lock().lines();
    let mut ask = |prompt: &str| -> Result<String, String> {
        eprint!("{prompt}");
        lines.next().unwrap_or(Ok(String::new())).map_err(|e| e.to_string())
    };
    let first = ask("Password: ")?;
    let again = ask("Reenter password: ")?;
    if first != again {
        return Err("passwords do not match".into());
    }
    if first.is_empty() {
        return Err("empty password".into());
    }
    Ok(first)
}

/// Prints the translation on stdout and a summary of what was not translated on stderr.
fn migrate_config(file: &std::path::Path) -> ExitCode {
    match broker::migrate::translate_file(file, broker::migrate::Options::default()) {
        Ok(m) => {
            print!("{}", m.toml);
            eprintln!(
                "migrate-config: {} setting(s) translated, {} not translated (listed at the top of the output)",
                m.translated.len(),
                m.notes.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the configuration, installs logging, then runs the broker on a tokio runtime.
fn start(args: Args) -> Result<(), String> {
    let mut config = Config::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    apply_flags(&mut config, &args);
    let log_reload = init_logging(&config)?;
    // Connections, listeners, and a few for the runtime, certificate reloads and logs.
    let descriptors = config.settings.limits.max_connections.saturating_add(config.settings.listeners.len() + 64);
    broker::reserve_descriptors(descriptors);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    let reload = Reload { config_file: args.config.clone(), log: log_reload };
    runtime.block_on(serve(config, reload))
}

/// What SIGHUP re-reads besides the TLS, password and ACL files: the configuration file's `log.level` and the
/// limits new connections read.
struct Reload {
    config_file: Option<PathBuf>,
    /// Installs a new log filter; `None` when `RUST_LOG` set it (the variable wins, as at start).
    log: Option<LogReload>,
}

type LogReload = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

impl Reload {
    /// Reads the configuration again and applies its `log.level` and its connection limits (see
    /// [`broker::Broker::reload_limits`]); a file that does not load changes nothing.
    fn config(&self, broker: &broker::Broker) {
        let c = match Config::load(self.config_file.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: configuration not reloaded; log.level and limits kept");
                return;
            }
        };
        match &self.log {
            None => tracing::info!("SIGHUP: RUST_LOG is set, so log.level is not reloaded"),
            Some(set) => match set(&c.log.level) {
                Ok(()) => tracing::info!(level = %c.log.level, "SIGHUP: log.level reloaded"),
                Err(e) => tracing::error!(error = %e, "SIGHUP: log.level kept"),
            },
        }
        let l = &c.settings.limits;
        match broker.reload_limits(&c.settings) {
            Ok(()) => tracing::info!(
                max_packet_size = l.max_packet_size,
                max_connect_packet_size = l.max_connect_packet_size,
                connect_timeout_secs = l.connect_timeout.as_secs(),
                max_keepalive = c.settings.sessions.max_keepalive,
                idle_timeout_secs = c.settings.sessions.idle_timeout_secs,
                max_filters_per_subscribe = l.max_filters_per_subscribe,
                max_sessions = l.max_sessions,
                "SIGHUP: limits for new connections reloaded"
            ),
            Err(e) => tracing::error!(error = %e, "SIGHUP: limits kept"),
        }
    }
}

fn log_reload(handle: reload::Handle<Targets, Registry>) -> LogReload {
    Box::new(move |level: &str| {
        let filter = parse_filter(level).map_err(|e| format!("log.level: {e}"))?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}

/// `info` or `info,broker::bridge=debug`: a default level and per-target levels. `tracing_subscriber`'s `Targets`
/// rather than `EnvFilter`: span and field filters are not offered, and the broker does without the regex engine
/// they need (about a tenth of the binary).
fn parse_filter(directives: &str) -> Result<Targets, String> {
    directives.trim().parse::<Targets>().map_err(|e| {
        format!("{e}; expected a level or target=level directives such as \"info,broker=debug\" (got {directives:?})")
    })
}

/// Command line flags win over the file and the environment.
fn apply_flags(config: &mut Config, args: &Args) {
    if !args.listen.is_empty() {
        // Plain listeners that keep the first configured listener's authentication (password and ACL files), so a
        // flag never quietly opens a secured broker.
        let auth = config.settings.listeners.first().map(|l| l.auth.clone()).unwrap_or_default();
        config.settings.listeners = args
            .listen
            .iter()
            .map(|&bind| ListenerSettings { auth: auth.clone(), ..ListenerSettings::plain(bind) })
            .collect();
    }
    if let Some(port) = args.port {
        for l in &mut config.settings.listeners {
            l.bind.set_port(port);
        }
    }
    if let Some(format) = args.log_format {
        config.log.format = match format {
            CliLogFormat::Text => LogFormat::Text,
            CliLogFormat::Json => LogFormat::Json,
        };
    }
}

/// Logs go to stderr; `RUST_LOG` wins over `log.level`. Colour only on a terminal, so that piped lines read
/// `addr=127.0.0.1:1883` verbatim. Returns how to change `log.level` later (SIGHUP), unless `RUST_LOG` set it.
fn init_logging(config: &Config) -> Result<Option<LogReload>, String> {
    let (filter, from_env) = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => {
            (parse_filter(&directives).map_err(|e| format!("RUST_LOG: {e}"))?, true)
        }
        _ => (parse_filter(&config.log.level).map_err(|e| format!("log.level: {e}"))?, false),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match config.log.format {
        LogFormat::Json => {
            registry.with(fmt::layer().json().flatten_event(true).with_writer(std::io::stderr)).try_init()
        }
        _ => registry
            .with(fmt::layer().with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr))
            .try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))?;
    Ok((!from_env).then_some(log_reload(handle)))
}

async fn serve(config: Config, reload: Reload) -> Result<(), String> {
    // Install the signal handlers before announcing the listeners, so a signal sent as soon as the address is
    // logged stops the broker gracefully rather than killing the process.
    let shutdown = shutdown_signal().context("cannot install signal handlers")?;
    let mut listeners = Vec::with_capacity(config.settings.listeners.len());
    for l in &config.settings.listeners {
        let listener = Listener::bind(l).await.with_context(|| format!("cannot listen on {}", l.bind))?;
        listeners.push(listener);
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "starting broker");
    // Recovery before announcing the listeners: "listening" means the broker serves what it had before.
    let http = if config.settings.http.enabled { bind_http(config.settings.http.bind).await } else { None };
    let mut broker = broker::Broker::new(config.settings).map_err(|e| e.to_string())?;
    if let Some(http) = http {
        broker = broker.with_http_listener(http);
    }
    for listener in &listeners {
        let local_addr = listener.local_addr().context("listener address")?;
        tracing::info!(addr = %local_addr, scheme = listener.scheme(), "listening");
    }
    reload_on_sighup(listeners.iter().filter_map(Listener::tls_reloader).collect(), broker.clone(), reload)
        .context("cannot install the SIGHUP handler")?;
    broker.serve_listeners(listeners, shutdown).await.map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}

/// Binds the HTTP endpoint. A failure is logged and the broker serves MQTT without it: the endpoint is for
/// operators, and `/readyz` staying unreachable tells them.
async fn bind_http(addr: SocketAddr) -> Option<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => {
            let bound = l.local_addr().unwrap_or(addr);
            tracing::info!(http_addr = %bound, "http endpoint: /metrics /healthz /readyz");
            Some(l)
        }
        Err(e) => {
            tracing::error!(error = %e, bind = %addr, "http.bind: cannot bind the HTTP endpoint; serving MQTT without it");
            None
        }
    }
}

/// Reloads the TLS files of these listeners, the password and ACL files (also watched for changes), the HTTP
/// endpoint's password file and the configuration file's `log.level` on every SIGHUP. docs/operations.md lists what
/// needs a restart instead.
#[cfg(unix)]
fn reload_on_sighup(reloaders: Vec<TlsReloader>, broker: broker::Broker, reload: Reload) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!(listeners = reloaders.len(), "SIGHUP: reloading TLS, password and ACL files");
            reload.config(&broker);
            for r in &reloaders {
                r.reload_logged("SIGHUP");
            }
            let b = broker.clone();
            let _ = tokio::task::spawn_blocking(move || {
                b.reload_http_tls();
                b.reload_auth();
            })
            .await;
        }
    });
    Ok(())
}

#[cfg(not(unix))]
fn reload_on_sighup(_reloaders: Vec<TlsReloader>, _broker: broker::Broker, _reload: Reload) -> std::io::Result<()> {
    Ok(())
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = name, "shutting down");
    })
}

/// Resolves on the first Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    Ok(async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot wait for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("shutting down");
    })
}

/// `anyhow`-style context for `main` without the dependency: errors become one line of text.
mod anyhow_lite {
    use std::fmt::Display;

    pub trait Context<T> {
        fn context(self, what: &str) -> Result<T, String>;
        fn with_context(self, what: impl FnOnce() -> String) -> Result<T, String>;
    }

    impl<T, E: Display> Context<T> for Result<T, E> {
        fn context(self, what: &str) -> Result<T, String> {
            self.map_err(|e| format!("{what}: {e}"))
        }
        fn with_context(self, what: impl FnOnce() -> String) -> Result<T, String> {
            self.map_err(|e| format!("{}: {e}", what()))
        }
    }
}
