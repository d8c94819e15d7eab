//! [`ModelSummary`]: the layers and parameter counts of the model, printed at fit start.
// Printing the table is this callback's job.

use std::collections::BTreeMap;

use lit_core::{Callback, Result, TrainerState};

/// Prints a table of the model's layers at the start of fit, as Lightning's `ModelSummary`: each
/// layer's name (its parameter prefix, such as `model.0`), a type read off its parameter shapes,
/// its shape and parameter count, then the total and trainable counts and the size in MB.
///
/// Layer types are inferred: a 4-d weight is a `Conv2d`, a 2-d weight a `Linear`, a lone 1-d
/// weight a normalisation layer (a `BatchNorm2d` when it keeps running statistics after a
/// convolution, a `BatchNorm1d` after a linear layer); output shapes are not known without running the model and are not
/// shown per layer.
#[derive(Debug, Default, Clone)]
pub struct ModelSummary {
    table: Option<String>,
}

impl ModelSummary {
    /// A summary printed at fit start.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last table rendered.
    pub fn table(&self) -> Option<&str> {
        self.table.as_deref()
    }
}

/// A parameter's name, shape and element size in bytes.
type Param = (String, Vec<usize>, usize);

struct Layer {
    kind: &'static str,
    shape: String,
    params: usize,
    bytes: usize,
}

/// Renders the summary table of named parameter shapes (with element sizes in bytes); layers
/// in `batch_norms` keep running statistics.
pub(crate) fn render(params: &[Param], batch_norms: &[String]) -> String {
    let mut layers: BTreeMap<String, Layer> = BTreeMap::new();
    for (name, dims, elem_size) in params {
        let (prefix, leaf) = name.rsplit_once('.').unwrap_or(("", name.as_str()));
        let n: usize = dims.iter().product();
        let layer = layers.entry(prefix.to_string()).or_insert(Layer {
            kind: "",
            shape: String::new(),
            params: 0,
            bytes: 0,
        });
        layer.params += n;
        layer.bytes += n * elem_size;
        if leaf == "weight" {
            layer.kind = match dims.len() {
                4 => "Conv2d",
                3 => "Conv1d",
                2 => "Linear",
                1 => "Norm",
                _ => "Tensor",
            };
            layer.shape = format!("{dims:?}");
        } else if layer.kind.is_empty() {
            layer.kind = "Param";
            layer.shape = format!("{dims:?}");
        }
    }
    // Order layers as a network is read: by numeric path segments where they are numbers.
    let mut names: Vec<String> = layers.keys().cloned().collect();
    names.sort_by_key(|n| {
        n.split('.')
            .map(|p| {
                p.parse::<usize>()
                    .map_or((1, 0, p.to_string()), |i| (0, i, String::new()))
            })
            .collect::<Vec<_>>()
    });
    // A batch norm normalises what its sibling layers produce: images when a convolution sits
    // beside it (`conv1` and `bn1`, `downsample.0` and `downsample.1`), features beside a
    // linear layer; else images when the network convolves at all.
    let parent = |n: &str| {
        n.rsplit_once('.')
            .map_or(String::new(), |(p, _)| p.to_string())
    };
    let kinds: Vec<(String, &'static str)> =
        names.iter().map(|n| (parent(n), layers[n].kind)).collect();
    let any_conv = kinds.iter().any(|(_, k)| *k == "Conv2d");
    for n in &names {
        if layers[n].kind != "Norm" || !batch_norms.contains(n) {
            continue;
        }
        let siblings: Vec<&str> = kinds
            .iter()
            .filter(|(p, _)| *p == parent(n))
            .map(|(_, k)| *k)
            .collect();
        let images = siblings.contains(&"Conv2d") || (!siblings.contains(&"Linear") && any_conv);
        layers.get_mut(n).expect("a listed layer").kind =
            if images { "BatchNorm2d" } else { "BatchNorm1d" };
    }
    let w = names.iter().map(|n| n.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "  | {:<w$} | {:<11} | {:<18} | {:>10}\n",
        "Name", "Type", "Weight shape", "Params"
    );
    out.push_str(&format!("{}\n", "-".repeat(w + 52)));
    let (mut total, mut bytes) = (0, 0);
    for (i, n) in names.iter().enumerate() {
        let l = &layers[n];
        total += l.params;
        bytes += l.bytes;
        out.push_str(&format!(
            "{i} | {n:<w$} | {:<11} | {:<18} | {:>10}\n",
            l.kind, l.shape, l.params
        ));
    }
    out.push_str(&format!("{}\n", "-".repeat(w + 52)));
    out.push_str(&format!("{total:<12} Trainable params\n0            Non-trainable params\n{total:<12} Total params\n"));
    out.push_str(&format!(
        "{:<12.3} Total estimated model params size (MB)\n",
        bytes as f64 / 1e6
    ));
    out
}

impl Callback for ModelSummary {
    fn name(&self) -> &str {
        "model_summary"
    }

    fn on_fit_start(&mut self, s: &mut TrainerState) -> Result<()> {
        let Some(varmap) = s.varmap() else {
            return Ok(());
        };
        let (params, batch_norms): (Vec<Param>, Vec<String>) = {
            let data = varmap.data().lock().expect("varmap lock poisoned");
            // Parameters only, as Lightning counts: buffers (running statistics) are not trained.
            let params = data
                .iter()
                .filter(|(k, _)| !lit_core::lit_model::is_buffer(k))
                .map(|(k, v)| (k.clone(), v.dims().to_vec(), v.dtype().size_in_bytes()))
                .collect();
            let norms = data
                .keys()
                .filter_map(|k| k.strip_suffix(".running_mean"))
                .map(str::to_string)
                .collect();
            (params, norms)
        };
        let table = render(&params, &batch_norms);
        tracing::info!(target: lit_core::REPORT_TARGET, "{table}");
        self.table = Some(table);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn layers_types_counts_and_size() {
        let params = vec![
            ("model.0.weight".to_string(), vec![16, 1, 3, 3], 4),
            ("model.0.bias".to_string(), vec![16], 4),
            ("model.11.weight".to_string(), vec![10, 128], 4),
            ("model.11.bias".to_string(), vec![10], 4),
        ];
        let t = render(&params, &[]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[2].contains("model.0") && lines[2].contains("Conv2d") && lines[2].contains("160"),
            "{t}"
        );
        assert!(
            lines[3].contains("model.11")
                && lines[3].contains("Linear")
                && lines[3].contains("1290"),
            "{t}"
        );
        assert!(t.contains("1450         Total params"), "{t}");
        let with_norm = render(
            &[
                ("conv1.weight".to_string(), vec![16, 1, 3, 3], 4),
                ("bn1.weight".to_string(), vec![16], 4),
                ("bn1.bias".to_string(), vec![16], 4),
            ],
            &["bn1".to_string()],
        );
        assert!(with_norm.contains("BatchNorm2d"), "{with_norm}");
        assert!(
            t.contains("0.006        Total estimated model params size (MB)"),
            "{t}"
        );
    }
}
