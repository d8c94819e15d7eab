//! Host-side helpers of the logged sums: one copy of many scalars to the host, adding every
//! process's sums in a data-parallel run, and their JSON form in checkpoints.

use std::collections::{BTreeMap, BTreeSet};

use candle::{DType, Tensor};
use lit_base::Collective;

use crate::Result;

/// The key of an epoch state that holds each process's own sums.
pub(crate) const RANKS_KEY: &str = "__ranks__";

/// Sums and weights as `{"key": [sum, weight], ...}`.
pub(crate) fn sums_json(sums: &BTreeMap<String, (f64, f64)>) -> serde_json::Value {
    serde_json::Value::Object(
        sums.iter()
            .map(|(k, (sum, weight))| (k.clone(), serde_json::json!([sum, weight])))
            .collect(),
    )
}

/// Copies scalar tensors to the host with one transfer.
pub(crate) fn to_host(
    values: &BTreeMap<String, Tensor>,
    syncs: &mut usize,
) -> Result<BTreeMap<String, f64>> {
    if values.is_empty() {
        return Ok(BTreeMap::new());
    }
    let stacked = Tensor::stack(&values.values().collect::<Vec<_>>(), 0)?;
    let host = stacked.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    *syncs += 1;
    Ok(values.keys().cloned().zip(host).collect())
}

/// Every process's epoch sums and weights added by key, over the union of their keys (a key one
/// process did not log, such as a validation set it had no example of, counts as nothing there);
/// keys no process logged anything under are left out. Every process calls it together.
pub(crate) fn merge_sums(
    c: &dyn Collective,
    local: &BTreeMap<String, (f64, f64)>,
) -> Result<BTreeMap<String, (f64, f64)>> {
    let listed = local.keys().cloned().collect::<Vec<_>>().join("\n");
    let mut keys = BTreeSet::new();
    for bytes in c.all_gather_bytes(listed.as_bytes())? {
        let text = String::from_utf8_lossy(&bytes);
        keys.extend(
            text.split('\n')
                .filter(|k| !k.is_empty())
                .map(str::to_string),
        );
    }
    let keys: Vec<String> = keys.into_iter().collect();
    let mut buf: Vec<f64> = keys
        .iter()
        .map(|k| local.get(k).map_or(0.0, |v| v.0))
        .collect();
    buf.extend(keys.iter().map(|k| local.get(k).map_or(0.0, |v| v.1)));
    c.all_reduce_sum_f64(&mut buf)?;
    let n = keys.len();
    Ok(keys
        .into_iter()
        .enumerate()
        .filter(|(i, _)| buf[n + i] > 0.0)
        .map(|(i, k)| (k, (buf[i], buf[n + i])))
        .collect())
}
