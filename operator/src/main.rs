//! `push-operator`: `crd` prints the CRD; more subcommands follow (render, run, local).
use clap::{Parser, Subcommand};
use kube::CustomResourceExt;
use push_operator::resources::PushCluster;

#[derive(Parser)]
#[command(
    name = "push-operator",
    version,
    about = "Kubernetes operator for PushCluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the PushCluster CustomResourceDefinition as YAML.
    Crd,
    /// Print every object the operator would create for a PushCluster manifest
    /// (one YAML stream; no cluster needed). Invalid input exits non-zero naming the field.
    Render(RenderArgs),
    /// Print the RBAC PolicyRules the operator needs (YAML: namespaced, leaderElection, cluster).
    Rbac,
    /// Run the controller against the cluster of the current kubeconfig / service account.
    Run(RunArgs),
    /// Run the PushCluster of a manifest on this machine: redis-server, push-server
    /// processes and nginx, supervised; prints `endpoint: <url>` when ready.
    Local(LocalArgs),
}

/// Flags of `push-operator run`; each also reads the env var the Helm chart sets.
#[derive(clap::Args)]
struct RunArgs {
    /// Comma-separated namespaces to watch; empty = all namespaces.
    #[arg(long, env = push_contract::operator::env::WATCH_NAMESPACES, default_value = "")]
    watch_namespaces: String,
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = push_contract::operator::env::ADMIN_LISTEN, default_value = push_contract::operator::ADMIN_LISTEN)]
    admin_listen: std::net::SocketAddr,
    /// Name of the leader-election Lease (in --pod-namespace); unset = no leader election.
    #[arg(long, env = push_contract::operator::env::LEASE_NAME)]
    lease_name: Option<String>,
    /// This pod's name: leader-election identity and Event reporting instance.
    #[arg(long, env = push_contract::operator::env::POD_NAME)]
    pod_name: Option<String>,
    /// This pod's namespace: where the Lease lives.
    #[arg(long, env = push_contract::operator::env::POD_NAMESPACE)]
    pod_namespace: Option<String>,
    /// The push-server image of clusters without spec.image.
    #[arg(long, env = push_contract::operator::env::PUSH_SERVER_IMAGE)]
    push_server_image: Option<String>,
    /// Seconds between one cluster's operator-caused rollout ending and the next starting.
    #[arg(long, env = push_contract::operator::env::CLUSTER_ROLLOUT_DELAY_SECONDS, default_value_t = 30)]
    cluster_rollout_delay_seconds: u64,
}

#[derive(clap::Args)]
struct RenderArgs {
    /// The PushCluster manifest (`-` for stdin).
    #[arg(short = 'f', long = "file")]
    manifest: std::path::PathBuf,
    /// Namespace for a manifest without metadata.namespace (default: `default`).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

/// Secrets the manifest references come from env `PUSHCLUSTER_SECRET_<NAME>_<KEY>` or the
/// file `<secrets-dir>/<name>/<key>`; a missing publish API token is generated and printed.
#[derive(clap::Args)]
struct LocalArgs {
    /// The PushCluster manifest; edits are applied while running.
    #[arg(short = 'f', long = "file")]
    manifest: std::path::PathBuf,
    /// Port of the nginx front door (default: 8080 when free, else any free port).
    #[arg(long)]
    port: Option<u16>,
    /// Directory of Secret files, laid out `<name>/<key>`.
    #[arg(long, default_value = "secrets")]
    secrets_dir: std::path::PathBuf,
    /// push-server binary (default: $PUSH_SERVER_BIN, else next to this executable).
    #[arg(long)]
    server_bin: Option<std::path::PathBuf>,
    /// Write a JSON snapshot of the processes (pids, ports) here on every change.
    #[arg(long, hide = true)]
    state_file: Option<std::path::PathBuf>,
    /// Route without stickiness (proves the e2e suite catches "Session ID unknown").
    #[arg(long, hide = true)]
    no_affinity: bool,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", serde_yaml_ng::to_string(&PushCluster::crd())?),
        Command::Render(args) => render(args)?,
        Command::Rbac => print!(
            "{}",
            serde_yaml_ng::to_string(&push_operator::controller::rbac::policy_rules())?
        ),
        Command::Run(args) => run_controller(args)?,
        Command::Local(args) => run_local(args)?,
    }
    Ok(())
}

fn run_local(args: LocalArgs) -> anyhow::Result<()> {
    // Logs on stderr: stdout carries only the `endpoint:` / `api-token:` lines.
    let filter = tracing_subscriber::EnvFilter::try_from_env(push_contract::operator::env::LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let options = push_operator::local::options::Options {
        manifest: args.manifest,
        port: args.port,
        secrets_dir: args.secrets_dir,
        server_bin: args.server_bin,
        state_file: args.state_file,
        no_affinity: args.no_affinity,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    if let Err(e) = runtime.block_on(push_operator::local::run(options)) {
        // Like `render`: a plain message (the same one for a refused manifest), no backtrace.
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    Ok(())
}

fn render(args: RenderArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let manifest = if args.manifest.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading stdin")?
    } else {
        std::fs::read_to_string(&args.manifest)
            .with_context(|| format!("reading {}", args.manifest.display()))?
    };
    match push_operator::render::render(&manifest, args.namespace.as_deref()) {
        Ok(stream) => print!("{stream}"),
        // A plain message (no backtrace): the user fixes the manifest, not the code.
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
    Ok(())
}

fn run_controller(args: RunArgs) -> anyhow::Result<()> {
    use push_operator::runtime::run;
    push_operator::telemetry::init();
    let config = run::RunConfig {
        namespaces: run::parse_namespaces(&args.watch_namespaces),
        admin_listen: args.admin_listen,
        lease: args.lease_name.map(|name| run::LeaseConfig {
            name,
            namespace: args.pod_namespace.unwrap_or_else(|| "default".to_string()),
            holder: args
                .pod_name
                .clone()
                .unwrap_or_else(|| format!("push-operator-{}", std::process::id())),
        }),
        pod_name: args.pod_name,
        cluster_rollout_delay: std::time::Duration::from_secs(args.cluster_rollout_delay_seconds),
    };
    if let Some(image) = args.push_server_image.filter(|i| !i.is_empty()) {
        push_operator::resources::set_default_push_server_image(image);
    }
    tokio::runtime::Runtime::new()?.block_on(run::run(config))
}
