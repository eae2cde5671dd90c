//! `vigil mcp`: the operator's view of an MCP listener's tool pins. A tool
//! whose definition changed since it was pinned is hidden from agents and
//! its calls refused until it is accepted here (the running gateway reads
//! the pins file again on the next `tools/list`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum McpCommand {
    /// List the pinned tools of a listener and the changed definitions
    /// waiting to be accepted.
    Pins {
        #[arg(long, short)]
        config: PathBuf,
        /// The `[[mcp]]` listener's name.
        #[arg(long)]
        listener: String,
    },
    /// Accept a tool's changed definition: agents see the tool again.
    AcceptTool {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        listener: String,
        #[arg(long)]
        tool: String,
        /// The new definition's fingerprint, as `vigil mcp pins` shows it
        /// (a definition changed again since is not accepted).
        #[arg(long)]
        fingerprint: String,
    },
}

pub fn run(cmd: McpCommand) -> anyhow::Result<()> {
    match cmd {
        McpCommand::Pins { config, listener } => {
            let path = pins_file(&config, &listener)?;
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    println!("no tools pinned yet ({})", path.display());
                    return Ok(());
                }
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            };
            let file: vigil_proxy_mcp::pins::PinFile = serde_json::from_str(&text)
                .with_context(|| format!("invalid {}", path.display()))?;
            for (tool, fp) in &file.pins {
                match file.changed.get(tool) {
                    Some(new) => {
                        println!("{tool}\tpinned {fp}\tCHANGED to {new}: hidden until accepted");
                        if let Some(d) = file.definitions.get(tool) {
                            // As JSON, escaped: a description cannot move the terminal.
                            println!("  new definition: {d}");
                        }
                    }
                    None => println!("{tool}\tpinned {fp}"),
                }
            }
            Ok(())
        }
        McpCommand::AcceptTool {
            config,
            listener,
            tool,
            fingerprint,
        } => {
            let path = pins_file(&config, &listener)?;
            let fp = vigil_proxy_mcp::pins::accept(&path, &tool, &fingerprint)?;
            println!("accepted the new definition of {tool:?} on {listener:?} (fingerprint {fp})");
            tracing::info!(%listener, %tool, fingerprint = %fp, "MCP tool definition accepted by the operator");
            Ok(())
        }
    }
}

fn pins_file(config: &std::path::Path, listener: &str) -> anyhow::Result<PathBuf> {
    let c = crate::config::Config::load(config)?;
    anyhow::ensure!(
        c.mcp.iter().any(|m| m.name == listener),
        "no [[mcp]] listener named {listener:?} in {}",
        config.display()
    );
    Ok(vigil_proxy_mcp::pins::pins_path(&c.data_dir, listener))
}
