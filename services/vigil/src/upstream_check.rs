//! Least privilege upstream: before a PostgreSQL listener serves anyone,
//! the gateway logs in with its own credential and reads what its role may
//! do (`vigil_proxy_postgres::privileges`). A privileged role is refused
//! unless the listener's `upstream.allow_privileged_role` says otherwise:
//! every gap in what the policy can see (a function, a trigger, a view)
//! would otherwise run with every privilege.

use vigil_proxy_postgres::privileges::check_upstream_role;
use vigil_proxy_postgres::ProxyConfig;

use crate::config::Config;

/// Checks every listener's upstream role; prints one line per listener.
/// Errors name the listener and what to do.
pub async fn check_upstream_roles(
    config: &Config,
    proxies: &[(std::net::SocketAddr, ProxyConfig)],
) -> anyhow::Result<()> {
    for (section, (_, proxy)) in config.postgres.iter().zip(proxies) {
        let allowed = section.upstream.allow_privileged_role;
        let name = &proxy.name;
        match check_upstream_role(&proxy.upstream).await {
            Ok(report) if report.is_privileged() && !allowed => anyhow::bail!(
                "postgres \"{name}\": {}. Every statement an agent gets through runs as this \
                 role, and so does any code the policy cannot see into. Give the gateway a \
                 least-privilege role (README: \"A least-privilege upstream role\"), or set \
                 upstream.allow_privileged_role = true to accept the risk",
                report.describe()
            ),
            Ok(report) if report.is_privileged() => {
                println!(
                    "WARNING postgres \"{name}\": {} (allowed by upstream.allow_privileged_role)",
                    report.describe()
                );
            }
            Ok(report) => println!("postgres \"{name}\": {}", report.describe()),
            Err(e) if allowed => println!(
                "WARNING postgres \"{name}\": the upstream role's privileges could not be checked ({e})"
            ),
            Err(e) => anyhow::bail!(
                "postgres \"{name}\": cannot check the upstream role's privileges ({e}); Vigil \
                 does not serve a listener whose role it could not check (set \
                 upstream.allow_privileged_role = true to start without the check)"
            ),
        }
    }
    Ok(())
}
