//! Logged values of a data-parallel run, merged across its processes (two threads here): epoch
//! means over every process's examples, and a process that saw no batch of a set.

use candle::{Device, Tensor};
use lit_model::LoggedResults;
use lit_model::{LogOptions, RunningStage, StepContext};
use lit_testutil::ThreadCollective;

/// Runs `f` as each member of a group of `n`, in its own thread; returns the results by rank.
fn as_group<T: Send + 'static>(
    n: usize,
    f: impl Fn(usize, StepContext) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = std::sync::Arc::new(f);
    let handles: Vec<_> = ThreadCollective::group(n)
        .into_iter()
        .enumerate()
        .map(|(rank, c)| {
            let f = std::sync::Arc::clone(&f);
            std::thread::spawn(move || {
                let ctx = StepContext::new(RunningStage::Validate, vec!["a".into(), "b".into()])
                    .with_collective(Some(c));
                f(rank, ctx)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn log(ctx: &mut StepContext, idx: usize, batch: usize, value: f32) {
    ctx.begin_batch(idx, batch);
    let v = Tensor::new(value, &Device::Cpu).unwrap();
    ctx.log(
        "val_loss",
        &v,
        LogOptions::for_stage(RunningStage::Validate),
    )
    .unwrap();
}

#[test]
fn epoch_means_cover_every_process_even_one_without_batches_of_a_set() {
    let values = as_group(2, |rank, mut ctx| {
        if rank == 0 {
            log(&mut ctx, 0, 4, 1.0); // set a: 4 examples of 1.0
            log(&mut ctx, 1, 2, 3.0); // set b: rank 1 has none of it
        } else {
            log(&mut ctx, 0, 2, 4.0); // set a: 2 examples of 4.0
        }
        let values = ctx.epoch_values().unwrap();
        let state = ctx.epoch_state().unwrap();
        (values, state)
    });
    for (values, state) in &values {
        // (4 * 1 + 2 * 4) / 6 over both processes; set b from rank 0 alone.
        assert_eq!(values["val_loss/a"], 2.0, "{values:?}");
        assert_eq!(values["val_loss/b"], 3.0, "{values:?}");
        assert_eq!(state["val_loss/a"], serde_json::json!([12.0, 6.0]));
    }
    assert_eq!(values[0], values[1], "every process logs the same values");
}
