use std::process::ExitCode;

use clap::Parser;
use parlor::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    parlor::telemetry::init();
    match actix_web::rt::System::new().block_on(parlor::startup::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
