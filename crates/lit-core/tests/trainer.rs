//! Trainer behaviour.

use std::cell::RefCell;
use std::rc::Rc;

use lit_core::{Accelerator, Error, Limit, Trainer, TrainerConfig};

use crate::common::{datamodule, hparams, Recorded, Recorder};

fn config(root: &std::path::Path) -> TrainerConfig {
    TrainerConfig {
        max_epochs: 1,
        accelerator: Accelerator::Cpu,
        default_root_dir: root.to_path_buf(),
        run_name: "linear4".into(),
        num_sanity_val_steps: 0,
        ..Default::default()
    }
}

#[test]
fn hook_order_of_a_short_fit_with_two_validation_sets() {
    let root = tempfile::tempdir().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let hp = hparams(&[]);
    let cfg = TrainerConfig {
        limit_train_batches: Limit::Batches(2),
        limit_val_batches: Limit::Batches(1),
        num_sanity_val_steps: 1,
        ..config(root.path())
    };
    let mut trainer = Trainer::new(cfg)
        .unwrap()
        .with_callback(Recorder(log.clone()));
    let mut module = Recorded::new(&hp, log.clone());
    trainer.fit(&mut module, &mut datamodule(&hp)).unwrap();
    let validation = [
        "on_validation_start",
        "on_validation_epoch_start",
        "module.on_validation_epoch_start",
        "module.validation_step[0]",
        "on_validation_batch_end[0]",
        "module.validation_step[1]",
        "on_validation_batch_end[1]",
        "module.on_validation_epoch_end",
        "on_validation_epoch_end",
        "on_validation_end",
    ];
    let batch = [
        "on_train_batch_start",
        "module.training_step",
        "on_train_batch_end",
    ];
    let mut expected = vec![
        "module.configure_optimizers",
        "on_fit_start",
        "on_sanity_check_start",
    ];
    expected.extend(validation);
    expected.extend([
        "on_sanity_check_end",
        "on_train_start",
        "on_train_epoch_start",
        "module.on_train_epoch_start",
    ]);
    expected.extend(batch);
    expected.extend(batch);
    expected.extend(validation);
    expected.extend([
        "module.on_train_epoch_end",
        "on_train_epoch_end",
        "on_train_end",
        "on_fit_end",
    ]);
    assert_eq!(*log.borrow(), expected);
}

#[test]
fn several_validation_sets_log_named_keys_and_one_set_logs_plain_keys() {
    let root = tempfile::tempdir().unwrap();
    let hp = hparams(&[]);
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut trainer = Trainer::new(config(root.path())).unwrap();
    trainer
        .fit(&mut Recorded::new(&hp, log.clone()), &mut datamodule(&hp))
        .unwrap();
    let keys: Vec<&String> = trainer.state().epoch_metrics().keys().collect();
    for k in [
        "val_acc/va",
        "val_acc/vb",
        "val_loss/va",
        "val_loss/vb",
        "train_loss_epoch",
    ] {
        assert!(keys.iter().any(|x| *x == k), "{k} not in {keys:?}");
    }
    let hp = hparams(&[("val_datasets", "vb".into())]);
    let mut trainer = Trainer::new(config(root.path())).unwrap();
    trainer
        .fit(&mut Recorded::new(&hp, log), &mut datamodule(&hp))
        .unwrap();
    let m = trainer.state().epoch_metrics();
    assert!(
        m.contains_key("val_acc") && m.contains_key("val_loss"),
        "{m:?}"
    );
}

#[test]
fn host_syncs_happen_only_every_log_every_n_steps_and_at_epoch_end() {
    // The same count in every precision without loss scaling: casts stay on the device.
    for precision in ["32-true", "bf16-mixed", "bf16-true"] {
        let root = tempfile::tempdir().unwrap();
        let hp = hparams(&[
            ("val_datasets", serde_json::Value::Null),
            ("precision", precision.into()),
        ]);
        let cfg = TrainerConfig {
            log_every_n_steps: 5,
            logger: false,
            precision: precision.into(),
            ..config(root.path())
        };
        let mut trainer = Trainer::new(cfg).unwrap();
        let log = Rc::new(RefCell::new(Vec::new()));
        trainer
            .fit(&mut Recorded::new(&hp, log), &mut datamodule(&hp))
            .unwrap();
        // 40 examples / 4 = 10 steps: syncs at steps 5 and 10, then one for the epoch means.
        assert_eq!(trainer.state().global_step(), 10, "{precision}");
        assert_eq!(trainer.state().host_syncs(), 3, "{precision}");
    }
}

#[test]
fn a_run_writes_hparams_and_a_metrics_row_per_epoch() {
    let root = tempfile::tempdir().unwrap();
    let hp = hparams(&[("extra_key", 7.into())]);
    let cfg = TrainerConfig {
        max_epochs: 3,
        ..config(root.path())
    };
    let mut trainer = Trainer::new(cfg).unwrap().with_hparams(hp.clone());
    let log = Rc::new(RefCell::new(Vec::new()));
    trainer
        .fit(&mut Recorded::new(&hp, log), &mut datamodule(&hp))
        .unwrap();
    let dir = root.path().join("linear4/version_0");
    assert_eq!(trainer.log_dir(), Some(dir.as_path()));
    let yaml = std::fs::read_to_string(dir.join("hparams.yaml")).unwrap();
    assert!(
        yaml.contains("extra_key: 7") && yaml.contains("lr: 0.05"),
        "{yaml}"
    );
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "train_loss_epoch")
        .unwrap();
    let epoch_rows = csv
        .lines()
        .skip(1)
        .filter(|l| !l.split(',').nth(col).unwrap_or("").is_empty())
        .count();
    assert_eq!(epoch_rows, 3, "{csv}");
}

#[test]
fn fast_dev_run_runs_one_batch_and_writes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let hp = hparams(&[]);
    let log = Rc::new(RefCell::new(Vec::new()));
    let cfg = TrainerConfig {
        fast_dev_run: 1,
        max_epochs: 10,
        ..config(root.path())
    };
    let mut trainer = Trainer::new(cfg)
        .unwrap()
        .with_callback(Recorder(log.clone()));
    let mut module = Recorded::new(&hp, log.clone());
    let mut dm = datamodule(&hp);
    trainer.fit(&mut module, &mut dm).unwrap();
    trainer.test(&mut module, &mut dm).unwrap();
    assert_eq!(trainer.state().global_step(), 1);
    let count = |what: &str| log.borrow().iter().filter(|l| *l == what).count();
    assert_eq!(count("module.training_step"), 1);
    assert_eq!(
        count("module.validation_step[0]") + count("module.validation_step[1]"),
        2
    );
    assert_eq!(count("module.test_step"), 1);
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[test]
fn same_seed_same_weights_after_training() {
    let run = |seed: u64, workers: usize| {
        let root = tempfile::tempdir().unwrap();
        let hp = hparams(&[("seed", seed.into()), ("num_workers", workers.into())]);
        let cfg = TrainerConfig {
            max_epochs: 2,
            logger: false,
            ..config(root.path())
        };
        let mut trainer = Trainer::new(cfg).unwrap();
        let mut module = Recorded::new(&hp, Rc::new(RefCell::new(Vec::new())));
        trainer.fit(&mut module, &mut datamodule(&hp)).unwrap();
        module.weights()
    };
    assert_eq!(run(5, 0), run(5, 0));
    assert_eq!(
        run(5, 0),
        run(5, 2),
        "loader threads must not change the data order"
    );
    assert_ne!(run(5, 0), run(6, 0));
}

#[test]
fn a_nan_loss_stops_the_run_with_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let hp = hparams(&[]);
    let cfg = TrainerConfig {
        log_every_n_steps: 1,
        ..config(root.path())
    };
    let mut trainer = Trainer::new(cfg).unwrap();
    let mut module = Recorded::new(&hp, Rc::new(RefCell::new(Vec::new())));
    module.nan_loss = true;
    let err = trainer.fit(&mut module, &mut datamodule(&hp)).unwrap_err();
    assert!(matches!(err, Error::NonFiniteLoss { step: 1, .. }), "{err}");
    assert!(err.to_string().contains("NaN"), "{err}");
}

#[test]
fn max_steps_and_limits_stop_where_asked() {
    let root = tempfile::tempdir().unwrap();
    let hp = hparams(&[]);
    let cfg = TrainerConfig {
        max_epochs: 5,
        max_steps: Some(7),
        logger: false,
        ..config(root.path())
    };
    let mut trainer = Trainer::new(cfg).unwrap();
    trainer
        .fit(
            &mut Recorded::new(&hp, Rc::new(RefCell::new(Vec::new()))),
            &mut datamodule(&hp),
        )
        .unwrap();
    assert_eq!(trainer.state().global_step(), 7);
    let cfg = TrainerConfig {
        max_epochs: 2,
        limit_train_batches: Limit::Fraction(0.5),
        logger: false,
        ..config(root.path())
    };
    let mut trainer = Trainer::new(cfg).unwrap();
    trainer
        .fit(
            &mut Recorded::new(&hp, Rc::new(RefCell::new(Vec::new()))),
            &mut datamodule(&hp),
        )
        .unwrap();
    assert_eq!(trainer.state().global_step(), 10);
}

#[test]
fn a_true_precision_refuses_parameters_of_another_type() {
    // The trainer says bf16-true, the module was built without the `precision` hyperparameter
    // (f32 parameters): training would silently be mixed precision.
    let root = tempfile::tempdir().unwrap();
    let hp = hparams(&[("val_datasets", serde_json::Value::Null)]);
    let cfg = TrainerConfig {
        logger: false,
        precision: "bf16-true".into(),
        ..config(root.path())
    };
    let mut trainer = Trainer::new(cfg).unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let err = trainer
        .fit(&mut Recorded::new(&hp, log), &mut datamodule(&hp))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("precision bf16-true needs the module's parameters in BF16"),
        "{err}"
    );
}

#[test]
fn a_data_parallel_fit_keeps_processes_in_step_and_writes_once() {
    // Two processes played by threads: the same weights at the end on both (gradients averaged,
    // the same seeded start), one run directory, the same merged validation values.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().to_path_buf();
    let handles: Vec<_> = lit_testutil::ThreadCollective::group(2)
        .into_iter()
        .map(|c| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let hp = hparams(&[("max_epochs", 2.into())]);
                let cfg = TrainerConfig {
                    max_epochs: 2,
                    devices: 2,
                    num_sanity_val_steps: 1,
                    ..config(&dir)
                };
                let strategy = lit_core::DataParallel::new(candle::Device::Cpu, c);
                let mut trainer = Trainer::new(cfg).unwrap().with_strategy(strategy);
                let mut module = Recorded::new(&hp, Rc::new(RefCell::new(Vec::new())));
                trainer.fit(&mut module, &mut datamodule(&hp)).unwrap();
                let values = trainer.state().epoch_metrics().clone();
                (module.weights(), values, trainer.state().global_step())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        results[0].0, results[1].0,
        "both processes end with the same weights"
    );
    assert_eq!(results[0].1, results[1].1, "and log the same merged values");
    // 40 training examples, batch 4, two processes: 5 steps an epoch each.
    assert_eq!(results[0].2, 10);
    let runs = std::fs::read_dir(dir.join("linear4")).unwrap().count();
    assert_eq!(runs, 1, "rank 0 alone makes the run directory");
    // A fit that asks for two devices without a data-parallel strategy is refused.
    let hp = hparams(&[]);
    let cfg = TrainerConfig {
        devices: 2,
        ..config(&dir)
    };
    let err = Trainer::new(cfg)
        .unwrap()
        .fit(
            &mut Recorded::new(&hp, Rc::new(RefCell::new(Vec::new()))),
            &mut datamodule(&hp),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("asks for 2 processes, but this run has 1"),
        "{err}"
    );
}
