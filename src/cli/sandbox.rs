//! `shoal sandbox`.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`shoal sandbox` is not built yet")
}
