//! [`sync`]: merging a metric's state across the processes of a data-parallel run, so that
//! `compute` gives the value over the whole data set, as torchmetrics' `sync` does.
//!
//! Each process encodes its state ([`Metric::state`]) as bytes, the caller's all-gather hands
//! every process every encoding, and each process rebuilds the metric by merging them in rank
//! order, so all processes hold the same state (and the same float sums) afterwards.

use candle::{DType, Device, Tensor};

use crate::{Error, Metric, Result};

/// An all-gather of bytes: this process's in, every process's out, indexed by rank.
pub type AllGather<'a> = dyn Fn(&[u8]) -> Result<Vec<Vec<u8>>> + 'a;

/// Replaces `metric`'s state with the merge of every process's, in rank order. `all_gather`
/// takes this process's bytes and returns every process's, indexed by rank; decoded tensors
/// are placed on `device`.
pub fn sync(metric: &mut dyn Metric, device: &Device, all_gather: &AllGather<'_>) -> Result<()> {
    let mine = encode(&metric.state())?;
    let all = all_gather(&mine)?;
    let template = metric.boxed_clone();
    metric.reset();
    for bytes in &all {
        let mut part = template.boxed_clone();
        part.reset();
        part.set_state(decode(bytes, device)?)?;
        metric.merge(part.as_ref())?;
    }
    Ok(())
}

fn code(dtype: DType) -> Result<u8> {
    Ok(match dtype {
        DType::F32 => 0,
        DType::F64 => 1,
        DType::U32 => 2,
        DType::I64 => 3,
        DType::U8 => 4,
        DType::BF16 => 5,
        DType::F16 => 6,
        other => {
            return Err(Error::InvalidInput {
                metric: "sync",
                message: format!("a metric state of type {other:?}"),
            })
        }
    })
}

fn dtype(code: u8) -> Result<DType> {
    Ok(match code {
        0 => DType::F32,
        1 => DType::F64,
        2 => DType::U32,
        3 => DType::I64,
        4 => DType::U8,
        5 => DType::BF16,
        6 => DType::F16,
        other => {
            return Err(Error::InvalidInput {
                metric: "sync",
                message: format!("unknown type code {other} in a metric state"),
            })
        }
    })
}

/// `[count: u32] { [present: u8] [type: u8] [rank: u32] [dims: u64...] [values: f64...] }`, little
/// endian; values travel as f64, which holds every value of the types above exactly.
fn encode(state: &[Option<Tensor>]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    out.extend((state.len() as u32).to_le_bytes());
    for part in state {
        let Some(t) = part else {
            out.push(0);
            continue;
        };
        out.push(1);
        out.push(code(t.dtype())?);
        out.extend((t.rank() as u32).to_le_bytes());
        for d in t.dims() {
            out.extend((*d as u64).to_le_bytes());
        }
        let values = t
            .flatten_all()?
            .to_dtype(DType::F64)?
            .to_device(&Device::Cpu)?
            .to_vec1::<f64>()?;
        for v in values {
            out.extend(v.to_le_bytes());
        }
    }
    Ok(out)
}

fn decode(bytes: &[u8], device: &Device) -> Result<Vec<Option<Tensor>>> {
    let bad = || Error::InvalidInput {
        metric: "sync",
        message: format!("a truncated metric state ({} bytes)", bytes.len()),
    };
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let s = bytes.get(at..at + n).ok_or_else(bad)?;
        at += n;
        Ok(s)
    };
    let u32_at = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap_or([0; 4]));
    let count = u32_at(take(4)?) as usize;
    let mut state = Vec::with_capacity(count);
    for _ in 0..count {
        if take(1)?[0] == 0 {
            state.push(None);
            continue;
        }
        let ty = dtype(take(1)?[0])?;
        let rank = u32_at(take(4)?) as usize;
        let mut dims = Vec::with_capacity(rank);
        for _ in 0..rank {
            dims.push(u64::from_le_bytes(take(8)?.try_into().unwrap_or([0; 8])) as usize);
        }
        let n: usize = dims.iter().product();
        let raw = take(n.checked_mul(8).ok_or_else(bad)?)?;
        let values: Vec<f64> = raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let t = Tensor::from_vec(values, dims, &Device::Cpu)?
            .to_dtype(ty)?
            .to_device(device)?;
        state.push(Some(t));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Average, MeanMetric, MulticlassAccuracy, MulticlassAuroc};

    /// Two "processes" in one: each all-gather returns both encodings in rank order.
    fn two_ranks(a: &mut dyn Metric, b: &mut dyn Metric) {
        let (ea, eb) = (encode(&a.state()).unwrap(), encode(&b.state()).unwrap());
        let both = move |_: &[u8]| Ok(vec![ea.clone(), eb.clone()]);
        sync(a, &Device::Cpu, &both).unwrap();
        sync(b, &Device::Cpu, &both).unwrap();
    }

    #[test]
    fn synced_metrics_equal_one_metric_over_all_the_data() {
        let preds = Tensor::new(
            &[[0.9f32, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]],
            &Device::Cpu,
        )
        .unwrap();
        let target = Tensor::new(&[0u32, 1, 1, 1], &Device::Cpu).unwrap();
        let halves = |m: &dyn Metric| {
            let (mut a, mut b) = (m.boxed_clone(), m.boxed_clone());
            a.update(
                &preds.narrow(0, 0, 2).unwrap(),
                &target.narrow(0, 0, 2).unwrap(),
            )
            .unwrap();
            b.update(
                &preds.narrow(0, 2, 2).unwrap(),
                &target.narrow(0, 2, 2).unwrap(),
            )
            .unwrap();
            two_ranks(a.as_mut(), b.as_mut());
            let mut whole = m.boxed_clone();
            whole.update(&preds, &target).unwrap();
            let v = |m: &dyn Metric| {
                m.compute()
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()
            };
            assert_eq!(v(a.as_ref()), v(whole.as_ref()), "{}", m.name());
            assert_eq!(v(b.as_ref()), v(whole.as_ref()), "{}", m.name());
        };
        halves(&MulticlassAccuracy::new(2, Average::Micro));
        halves(&MulticlassAuroc::new(2, Average::Macro));
        let mut a = MeanMetric::new();
        let mut b = MeanMetric::new();
        a.update(
            &Tensor::new(&[1f32, 2.], &Device::Cpu).unwrap(),
            &Tensor::new(&[1f32, 1.], &Device::Cpu).unwrap(),
        )
        .unwrap();
        b.update(
            &Tensor::new(&[6f32], &Device::Cpu).unwrap(),
            &Tensor::new(&[1f32], &Device::Cpu).unwrap(),
        )
        .unwrap();
        two_ranks(&mut a, &mut b);
        assert_eq!(
            a.compute()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap(),
            3.0
        );
    }

    #[test]
    fn a_truncated_state_is_an_error() {
        let m = MulticlassAccuracy::new(2, Average::Micro);
        let mut bytes = encode(&m.state()).unwrap();
        bytes.truncate(2);
        assert!(decode(&bytes, &Device::Cpu).is_err());
    }
}
