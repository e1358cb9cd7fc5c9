//! `shoal login | logout`: registry credentials in docker's config file
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`), the one
//! `docker login` writes; and the lookup `--with-registry-auth` does in
//! it for an image's registry.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use shoal_control::image::RegistryCredentials;
use shoal_control::image::auth::{DOCKER_HUB, DockerConfig, registry_of};

#[derive(clap::Args)]
pub struct LoginArgs {
    /// The user.
    #[arg(short, long)]
    username: String,
    /// Read the password (or access token) from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// The registry, `HOST[:PORT]` (default: Docker Hub).
    server: Option<String>,
}

#[derive(clap::Args)]
pub struct LogoutArgs {
    /// The registry, `HOST[:PORT]` (default: Docker Hub).
    server: Option<String>,
}

/// `shoal login`: keeps the credentials in the file, as `docker login`
/// does; the registry sees them at the first pull with
/// `--with-registry-auth`.
pub fn login(args: LoginArgs) -> Result<()> {
    if !args.password_stdin {
        return Err(super::usage(
            "give the password on standard input: `shoal login -u USER --password-stdin [SERVER]`",
        ));
    }
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']);
    if password.is_empty() || args.username.is_empty() {
        bail!("the username and the password must not be empty");
    }
    let server = args.server.as_deref().unwrap_or(DOCKER_HUB);
    let path = config_path()?;
    let mut config = read(&path)?;
    config.set(
        server,
        &RegistryCredentials {
            username: args.username,
            password: password.to_owned(),
        },
    );
    write(&path, &config)?;
    // Not checked against the registry (shoal has no call that only
    // authenticates): the first pull with them is.
    println!("Credentials for {server} saved in {}", path.display());
    Ok(())
}

/// `shoal logout`.
pub fn logout(args: LogoutArgs) -> Result<()> {
    let server = args.server.as_deref().unwrap_or(DOCKER_HUB);
    let path = config_path()?;
    let mut config = read(&path)?;
    if config.remove(server) {
        write(&path, &config)?;
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(())
}

/// What `--with-registry-auth` sends for `image`: the credentials for its
/// registry, which must be there.
pub(super) fn credentials_for(image: &str) -> Result<RegistryCredentials> {
    let registry = registry_of(image)?;
    let path = config_path()?;
    let found = read(&path)?
        .credentials(&registry)
        .with_context(|| path.display().to_string())?;
    found.ok_or_else(|| {
        let login = match registry.as_str() {
            "docker.io" => "shoal login -u USER --password-stdin".to_owned(),
            r => format!("shoal login -u USER --password-stdin {r}"),
        };
        anyhow::anyhow!(
            "--with-registry-auth: no credentials for {registry} (image {image}) in {}; `{login}` \
             first",
            path.display()
        )
    })
}

/// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
fn config_path() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("config.json"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".docker/config.json")),
        None => bail!("neither DOCKER_CONFIG nor HOME is set: no docker config file to use"),
    }
}

/// The file, or an empty one if there is none.
fn read(path: &Path) -> Result<DockerConfig> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    DockerConfig::parse(&text).with_context(|| path.display().to_string())
}

/// Replaces the file at once, readable by its owner only, making its
/// folder if needed.
fn write(path: &Path, config: &DockerConfig) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(config.to_json().as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_file_is_written_whole_for_its_owner_only_in_a_new_folder() {
        let root = std::env::temp_dir().join(format!("shoal-login-{}", std::process::id()));
        let path = root.join(".docker/config.json");
        let mut config = read(&path).unwrap();
        config.set(
            "h:5000",
            &RegistryCredentials {
                username: "u".into(),
                password: "p".into(),
            },
        );
        write(&path, &config).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let again = read(&path).unwrap();
        assert_eq!(again.credentials("h:5000").unwrap().unwrap().username, "u");
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
