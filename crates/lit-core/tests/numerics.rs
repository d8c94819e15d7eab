//! Gradient accumulation and clipping.

use std::cell::RefCell;
use std::rc::Rc;

use candle::{Device, Tensor, Var};
use lit_core::{clip_gradients, Accelerator, GradientClip, Trainer, TrainerConfig};

use crate::common::{datamodule, hparams, Recorded};

fn train_once(optimizer: &str, batch_size: usize, accumulate: usize) -> (Vec<f32>, u64, f64) {
    let root = tempfile::tempdir().unwrap();
    let hp = hparams(&[
        ("train_dataset", "train64".into()),
        ("val_datasets", serde_json::Value::Null),
        ("batch_size", batch_size.into()),
        ("optimizer", optimizer.into()),
        ("lr", 0.1.into()),
        ("lr_scheduler", "step".into()),
        ("lr_interval", "step".into()),
        ("lr_decay_steps", 1.into()),
        ("lr_decay_rate", 0.5.into()),
    ]);
    let cfg = TrainerConfig {
        max_epochs: 1,
        accelerator: Accelerator::Cpu,
        default_root_dir: root.path().to_path_buf(),
        logger: false,
        num_sanity_val_steps: 0,
        accumulate_grad_batches: accumulate,
        ..Default::default()
    };
    let mut trainer = Trainer::new(cfg).unwrap();
    let mut module = Recorded::new(&hp, Rc::new(RefCell::new(Vec::new())));
    trainer.fit(&mut module, &mut datamodule(&hp)).unwrap();
    let lr = trainer.state().learning_rate().unwrap().1;
    (module.weights(), trainer.state().global_step(), lr)
}

#[test]
fn accumulating_four_batches_of_16_equals_one_batch_of_64() {
    for optimizer in ["sgd", "adam"] {
        let (one, steps_one, lr_one) = train_once(optimizer, 64, 1);
        let (acc, steps_acc, lr_acc) = train_once(optimizer, 16, 4);
        assert_eq!(
            (steps_one, steps_acc),
            (1, 1),
            "{optimizer}: one optimizer step each"
        );
        // The step schedule halves the rate once per optimizer step, not per batch.
        assert_eq!((lr_one, lr_acc), (0.05, 0.05), "{optimizer}");
        for (a, b) in one.iter().zip(&acc) {
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                "{optimizer}: {a} vs {b}"
            );
        }
        // Without accumulation the same data takes four steps.
        let (_, steps, _) = train_once(optimizer, 16, 1);
        assert_eq!(steps, 4);
    }
}

#[test]
fn the_last_batch_of_an_epoch_steps_even_mid_window() {
    // 64 examples in batches of 16 with accumulation 3: steps after batches 3 and 4.
    let (_, steps, _) = train_once("sgd", 16, 3);
    assert_eq!(steps, 2);
}

#[test]
fn clipping_by_norm_and_by_value() {
    // torch: p.grad = [3., 4.]; clip_grad_norm_([p], 1.0) -> [0.6, 0.8] (to 1e-6 relative)
    let p = Var::from_tensor(&Tensor::new(&[1.0f32, 1.0], &Device::Cpu).unwrap()).unwrap();
    let loss = (p.as_tensor() * &Tensor::new(&[3.0f32, 4.0], &Device::Cpu).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let vars = [p.clone()];
    let mut grads = loss.backward().unwrap();
    clip_gradients(&mut grads, &vars, GradientClip::Norm(1.0)).unwrap();
    let g = grads.get(&p).unwrap().to_vec1::<f32>().unwrap();
    assert!(
        (g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6,
        "{g:?}"
    );
    let mut grads = loss.backward().unwrap();
    clip_gradients(&mut grads, &vars, GradientClip::Norm(10.0)).unwrap();
    assert_eq!(grads.get(&p).unwrap().to_vec1::<f32>().unwrap(), [3.0, 4.0]);
    let mut grads = loss.backward().unwrap();
    clip_gradients(&mut grads, &vars, GradientClip::Value(3.5)).unwrap();
    assert_eq!(grads.get(&p).unwrap().to_vec1::<f32>().unwrap(), [3.0, 3.5]);
}
