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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", serde_yaml_ng::to_string(&PushCluster::crd())?),
    }
    Ok(())
}
