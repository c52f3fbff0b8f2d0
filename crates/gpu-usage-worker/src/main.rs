//! `gpu-usage-worker`: see `gpu_usage_worker::cli` for the subcommands.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match gpu_usage_worker::cli::main().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
