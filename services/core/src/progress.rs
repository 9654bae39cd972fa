//! Progress bars for long batch work (training, fitting, dataset builds), one
//! style everywhere; hidden when not wanted (tests, non-interactive runs).

use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(len: u64, label: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(&format!("{{spinner}} {label} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}} {{msg}}")) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}
