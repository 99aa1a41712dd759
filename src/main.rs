use std::process::ExitCode;

use clap::Parser;
use parlor::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = parlor::telemetry::init();
    let result = actix_web::rt::System::new().block_on(parlor::startup::run(cli));
    // Write the queued log lines before anything else reaches stderr.
    drop(logs);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
