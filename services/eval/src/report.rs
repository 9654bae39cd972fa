//! Where an experiment's results go: raw rows as CSV, and its section of the
//! results document, which the command writes and nobody edits by hand.
//!
//! `docs/results.md` holds one section per experiment between
//! `<!-- BEGIN eval:NAME -->` and `<!-- END eval:NAME -->`; a run replaces its
//! own section and leaves the others as they are, so experiments can be rerun
//! one at a time. Sections are kept in the order of [`EXPERIMENTS`].

use std::fmt::Write as _;
use std::path::Path;

/// The experiments, in the order their sections appear.
pub const EXPERIMENTS: [&str; 6] = ["frontier", "dynamic", "rl-rounds", "scorer-refresh", "theorem", "through-kafka"];

const PREAMBLE: &str = "# netgpt evaluation results\n\n\
This file is written by `netgpt eval` (each experiment replaces its own section; do not edit it by \
hand). Every number below comes from the command line printed in its section; intervals are 95 % \
confidence intervals over the stated repetitions (Student's t), and the raw rows are in the CSV \
files named beside them.\n";

/// Replaces (or adds) experiment `name`'s section of the document at `path`.
pub fn write_section(path: &Path, name: &str, body: &str) -> anyhow::Result<()> {
    anyhow::ensure!(EXPERIMENTS.contains(&name), "unknown experiment section {name:?}");
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
    };
    let mut sections: Vec<(String, String)> = EXPERIMENTS.iter().filter_map(|n| section(&old, n).map(|b| (n.to_string(), b))).collect();
    match sections.iter_mut().find(|(n, _)| n == name) {
        Some(s) => s.1 = body.trim().to_string(),
        None => sections.push((name.to_string(), body.trim().to_string())),
    }
    sections.sort_by_key(|(n, _)| EXPERIMENTS.iter().position(|e| e == n));
    let mut out = String::from(PREAMBLE);
    for (n, b) in sections {
        let _ = write!(out, "\n<!-- BEGIN eval:{n} -->\n{b}\n<!-- END eval:{n} -->\n");
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, out)?;
    Ok(())
}

/// The body of section `name` in `doc`, if it has one.
pub fn section(doc: &str, name: &str) -> Option<String> {
    let begin = format!("<!-- BEGIN eval:{name} -->");
    let end = format!("<!-- END eval:{name} -->");
    let start = doc.find(&begin)? + begin.len();
    let stop = start + doc[start..].find(&end)?;
    Some(doc[start..stop].trim().to_string())
}

/// Rows as CSV: a header line, then one line per row (fields are numbers or
/// plain names; a field with a comma or quote is quoted).
pub fn csv(header: &[&str], rows: &[Vec<String>]) -> String {
    let quote = |f: &str| if f.contains([',', '"', '\n']) { format!("\"{}\"", f.replace('"', "\"\"")) } else { f.to_string() };
    let mut out = header.join(",");
    out.push('\n');
    for r in rows {
        out.push_str(&r.iter().map(|f| quote(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// How to rerun it: the command line of this process.
pub fn command_line() -> String {
    let mut args = std::env::args();
    let program = args.next().map(|p| Path::new(&p).file_name().map_or(p.clone(), |f| f.to_string_lossy().into_owned())).unwrap_or_else(|| "netgpt".into());
    std::iter::once(program).chain(args).collect::<Vec<_>>().join(" ")
}

/// A markdown table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n|{}\n", header.join(" | "), header.iter().map(|_| " --- |").collect::<String>());
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_replaces_only_its_own_section_and_keeps_the_order() {
        let dir = std::env::temp_dir().join(format!("netgpt-report-{}", std::process::id()));
        let path = dir.join("results.md");
        let _ = std::fs::remove_file(&path);
        write_section(&path, "theorem", "τ* one").unwrap();
        write_section(&path, "frontier", "frontier one").unwrap();
        write_section(&path, "theorem", "τ* two").unwrap();
        let doc = std::fs::read_to_string(&path).unwrap();
        assert_eq!(section(&doc, "theorem").as_deref(), Some("τ* two"));
        assert_eq!(section(&doc, "frontier").as_deref(), Some("frontier one"));
        assert!(doc.find("eval:frontier").unwrap() < doc.find("eval:theorem").unwrap());
        assert!(!doc.contains("τ* one"));
        assert!(write_section(&path, "nonsense", "x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let text = csv(&["a", "b"], &[vec!["1".into(), "x, y".into()]]);
        assert_eq!(text, "a,b\n1,\"x, y\"\n");
    }
}
