//! `phigate config check`: reads the configuration, resolves its secrets and validates all of
//! it (the `policy` crate does the work), then prints every problem, one per line, as
//! `FILE:LINE: path: message`. Exit 64 (EX_USAGE) on a bad configuration, 0 with a one-line
//! summary when it is valid. Never prints a secret.

use std::path::PathBuf;

/// Exit code for a bad configuration (sysexits EX_USAGE).
pub const EXIT_CONFIG: i32 = 64;

/// The default configuration file when neither --config nor PHIGATE_CONFIG is given.
pub const DEFAULT_CONFIG: &str = "phigate.yaml";

/// `phigate config`.
#[derive(clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(clap::Subcommand)]
enum ConfigCommand {
    /// Validate the configuration: every problem at once, with its line and path.
    Check {
        /// The configuration file [env: PHIGATE_CONFIG; default: ./phigate.yaml, else
        /// ./phigate-data/phigate.yaml].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// The configuration every command uses, found as `phigate serve` finds it: the flag, else
/// `PHIGATE_CONFIG`, else `./phigate.yaml`, else `./phigate-data/phigate.yaml` (the one a first
/// start made); `None` when there is none.
pub fn find_config(flag: Option<PathBuf>) -> Option<PathBuf> {
    if let Some(p) = flag
        .or_else(|| std::env::var_os("PHIGATE_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from))
    {
        return Some(p);
    }
    [PathBuf::from(DEFAULT_CONFIG), PathBuf::from(crate::serve::DATA_DIR).join(DEFAULT_CONFIG)]
        .into_iter()
        .find(|p| p.exists())
}

/// The configuration path for `config check`: [`find_config`], else `phigate.yaml` (reported
/// as missing).
pub fn config_path(flag: Option<PathBuf>) -> PathBuf {
    find_config(flag).unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

/// What a valid configuration does that its author may not mean: cloud providers that get no
/// PHI because their BAA is unsigned, expired or expires within 30 days, and an OIDC identity
/// taken from a claim that some identity providers let its holder edit.
pub fn warnings(cfg: &policy::Config, now: time::OffsetDateTime) -> Vec<String> {
    let mut out = Vec::new();
    for p in cfg.providers.iter().filter(|p| p.hosting == policy::Hosting::Cloud) {
        let name = &p.name;
        if !p.baa.signed {
            out.push(format!("provider {name}: cloud, no signed BAA: it receives no PHI"));
        } else if let Some(e) = p.baa.expires_at {
            let date = e.date();
            if e <= now {
                out.push(format!("provider {name}: its BAA expired on {date}: it receives no PHI"));
            } else if e - now < time::Duration::days(30) {
                out.push(format!(
                    "provider {name}: its BAA expires on {date}; after that it receives no PHI"
                ));
            }
        }
    }
    if let Some(o) = &cfg.oidc {
        let claim = o.identity_claim.as_str();
        if ["preferred_username", "email", "name", "nickname", "upn", "unique_name"]
            .contains(&claim)
        {
            out.push(format!(
                "oidc.identity_claim: {claim} can be edited by its holder at some identity \
                 providers (a person could then act as another); sub cannot"
            ));
        }
    }
    out
}

/// Runs `phigate config ...`; exits 64 itself on a bad configuration.
pub fn run(args: ConfigArgs) -> anyhow::Result<()> {
    match args.command {
        ConfigCommand::Check { config } => {
            let path = config_path(config);
            let shown = path.display().to_string();
            let checked = policy::Config::load(&path).and_then(policy::Policy::new);
            match checked {
                Ok(p) => {
                    println!(
                        "{shown}: ok: {} (policy version {})",
                        p.config().summary(),
                        p.version()
                    );
                    for w in warnings(p.config(), time::OffsetDateTime::now_utc()) {
                        println!("{shown}: warning: {w}");
                    }
                    Ok(())
                }
                Err(errors) => {
                    print!("{}", errors.render(&shown));
                    eprintln!(
                        "phigate: {shown}: {} problem{}; nothing was started",
                        errors.0.len(),
                        if errors.0.len() == 1 { "" } else { "s" }
                    );
                    std::process::exit(EXIT_CONFIG);
                }
            }
        }
    }
}
