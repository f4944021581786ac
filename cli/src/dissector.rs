//! `ringlab dissector`: the Wireshark Lua dissector shipped in dissector/ringlab.lua, built
//! into the binary so that an installed `ringlab` can print or install it.

use anyhow::{Context, Result};
use std::path::PathBuf;

/// The dissector's source.
pub(crate) const SCRIPT: &str = include_str!("../../dissector/ringlab.lua");

/// Returns the personal plugins folder Wireshark reads Lua plugins from.
fn plugins_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".local/lib/wireshark/plugins"))
}

/// Runs `ringlab dissector`: prints the script, installs it, or says how to.
pub(crate) fn command(install: bool, print: bool) -> Result<i32> {
    if print {
        print!("{SCRIPT}");
        return Ok(0);
    }
    let dir = plugins_dir()?;
    let path = dir.join("ringlab.lua");
    if install {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(&path, SCRIPT).with_context(|| format!("writing {}", path.display()))?;
        println!("installed {}", path.display());
        println!(
            "Wireshark and tshark load it at their next start (check: Help > About > Plugins)."
        );
    } else {
        println!(
            "ringlab dissector --install   copies the dissector to {}",
            path.display()
        );
        println!("ringlab dissector --print     prints it (for tshark -X lua_script:FILE)");
    }
    Ok(0)
}
