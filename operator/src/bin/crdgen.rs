//! `crdgen`: prints the CRDs of Sluice's custom resources.
//!
//! `crdgen` prints them to stdout (separated by `---`), ready for
//! `kubectl apply -f -`; `crdgen --write DIR [--write DIR2 ...]` writes one
//! file per CRD into each directory.

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let crds = sluice_operator::crdgen::render().context("rendering CRDs")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            let docs: Vec<&str> = crds.iter().map(|(_, y)| y.as_str()).collect();
            print!("{}", docs.join("---\n"));
        }
        pairs if pairs.len() % 2 == 0 && pairs.chunks(2).all(|p| p[0] == "--write") => {
            for dir in pairs.chunks(2).map(|p| &p[1]) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
                for (name, yaml) in &crds {
                    let path = std::path::Path::new(dir).join(name);
                    std::fs::write(&path, yaml)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
            }
        }
        _ => anyhow::bail!("usage: crdgen [--write DIR]..."),
    }
    Ok(())
}
