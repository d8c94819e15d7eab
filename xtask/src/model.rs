//! `cargo xtask new-model NAME` and `remove-model NAME`.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};

use crate::{insert_before, remove_line, run_cmd};

struct Names {
    snake: String,
    kebab: String,
    camel: String,
}

fn names(name: &str) -> anyhow::Result<Names> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        bail!("model name '{name}': use snake_case (a-z, 0-9, _), starting with a letter");
    }
    let camel = name
        .split('_')
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    Ok(Names {
        snake: name.into(),
        kebab: name.replace('_', "-"),
        camel,
    })
}

fn dep_line(n: &Names) -> String {
    format!(
        "{} = {{ path = \"../../crates/models/{}\" }}",
        n.kebab, n.kebab
    )
}

fn register_line(n: &Names) -> String {
    format!(
        "    r.register::<{}::{}>(\"{}\");",
        n.snake, n.camel, n.snake
    )
}

fn crate_dir(n: &Names) -> PathBuf {
    PathBuf::from("crates/models").join(&n.kebab)
}

pub(crate) fn new_model(name: &str) -> anyhow::Result<()> {
    let n = names(name)?;
    let dir = crate_dir(&n);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let models_rs = PathBuf::from("apps/mnist/src/models.rs");
    if fs::read_to_string(&models_rs)?.contains(&format!("(\"{}\")", n.snake)) {
        bail!(
            "a model named '{}' is already registered in {}",
            n.snake,
            models_rs.display()
        );
    }
    fs::create_dir_all(dir.join("src"))?;
    let blank = PathBuf::from("crates/models/standard-net");
    for file in ["Cargo.toml", "src/lib.rs"] {
        let text = fs::read_to_string(blank.join(file))
            .with_context(|| format!("reading the blank {file}"))?;
        let text = text
            .replace("standard-net", &n.kebab)
            .replace("standard_net", &n.snake)
            .replace("StandardNet", &n.camel)
            .replace(
                "The blank model to copy: a configurable MLP with its hyperparameters in a Config",
                &format!("The {} network", n.snake),
            );
        fs::write(dir.join(file), text)?;
    }
    insert_before(
        &PathBuf::from("apps/mnist/Cargo.toml"),
        "# lit:model-deps",
        &format!("{}\n", dep_line(&n)),
    )?;
    insert_before(
        &models_rs,
        "// lit:register-models",
        &format!("{}\n", register_line(&n)),
    )?;
    println!(
        "created {} (a copy of the blank standard-net) and registered it as '{}'.\n\
         Edit its Config and forward pass, then: cargo xtask train -- --model-name {} --fast-dev-run",
        dir.display(),
        n.snake,
        n.snake
    );
    Ok(())
}

pub(crate) fn remove_model(name: &str) -> anyhow::Result<()> {
    let n = names(name)?;
    if n.snake == "standard_net" || n.snake == "example_net" {
        bail!("'{name}' ships with the project; remove it by hand if you mean it");
    }
    let dir = crate_dir(&n);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    remove_line(&PathBuf::from("apps/mnist/Cargo.toml"), &dep_line(&n))?;
    remove_line(
        &PathBuf::from("apps/mnist/src/models.rs"),
        &register_line(&n),
    )?;
    // Drop the crate from Cargo.lock as well.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run_cmd(
        Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--offline"])
            .stdout(std::process::Stdio::null()),
    )?;
    println!("removed model '{}'", n.snake);
    Ok(())
}
